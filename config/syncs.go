package config

import (
	"fmt"
	"strings"
)

// Syncs configures syncs (pages of a vendor search followed to the end):
// their limits and the syncs started on a schedule.
type Syncs struct {
	// MaxPages is a sync's page cap. Default 10000.
	MaxPages int `yaml:"max_pages"`
	// Overlap is how far before its high-water mark an incremental sync
	// asks from. Default 30s.
	Overlap Duration `yaml:"overlap"`
	// Scheduled are syncs started every interval by the scheduler (once
	// per interval however many schedulers run). Default: none.
	Scheduled []ScheduledSync `yaml:"scheduled"`
}

// ScheduledSync is a sync started every Every for credentials of a vendor.
type ScheduledSync struct {
	// Vendor is the vendor instance. Required.
	Vendor string `yaml:"vendor"`
	// Credentials are the credentials synced. Default: every credential
	// of the vendor that is not revoked.
	Credentials []string `yaml:"credentials"`
	// Resource is the search path ("Patient"). Required.
	Resource string `yaml:"resource"`
	// Query are the search's parameters ({_count: "100"}). Default: none.
	Query map[string]string `yaml:"query"`
	// Mode is full or incremental. Default incremental.
	Mode string `yaml:"mode"`
	// Every is the interval. Required, at least 1m.
	Every Duration `yaml:"every"`
}

// Defaults of Syncs.
const (
	DefaultSyncMaxPages = 10000
	DefaultSyncOverlap  = Duration(30_000_000_000) // 30s
)

// setSyncDefaults fills Syncs' defaults.
func (s *Syncs) setDefaults() {
	if s.MaxPages == 0 {
		s.MaxPages = DefaultSyncMaxPages
	}
	setDuration(&s.Overlap, DefaultSyncOverlap)
	for i := range s.Scheduled {
		setString(&s.Scheduled[i].Mode, "incremental")
	}
}

// validateSyncs checks the syncs section against the vendors.
func (c *Config) validateSyncs(p *problems) {
	s := c.Syncs
	if s.MaxPages < 0 {
		p.add("syncs.max_pages", "must be 1 or more (default %d)", DefaultSyncMaxPages)
	}
	if s.Overlap < 0 {
		p.add("syncs.overlap", "must not be negative (e.g. 30s)")
	}
	for i, sc := range s.Scheduled {
		at := fmt.Sprintf("syncs.scheduled[%d]", i)
		if _, ok := c.Vendors[sc.Vendor]; !ok {
			p.add(at+".vendor", "%s is not a configured vendor", p.show(at+".vendor", sc.Vendor))
		}
		if sc.Resource == "" || strings.ContainsAny(sc.Resource, "?#") || strings.HasPrefix(sc.Resource, "/") {
			p.add(at+".resource", "must be a search path relative to the vendor's base URL, like Patient (give the query in query)")
		}
		if sc.Mode != "full" && sc.Mode != "incremental" {
			p.add(at+".mode", "%s is not a choice: use incremental (the default) or full", p.show(at+".mode", sc.Mode))
		}
		if sc.Every < Duration(60_000_000_000) {
			p.add(at+".every", "must be at least 1m (e.g. 1h)")
		}
		for j, id := range sc.Credentials {
			if !validID.MatchString(id) {
				p.add(fmt.Sprintf("%s.credentials[%d]", at, j), "%s must be %s", p.show(at+".credentials", id), idPattern)
			}
		}
	}
}
