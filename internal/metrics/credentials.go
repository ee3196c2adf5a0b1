package metrics

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/internal/store"
)

// Scanner reads every credential's summary (store.Store does).
type Scanner interface {
	Scan(ctx context.Context, fn func(store.Summary) error) error
}

// States are the credential states counted by tokenrelay_credentials.
var States = []store.State{store.StateActive, store.StateRefreshing, store.StateFailing, store.StateExpired, store.StateRevoked}

// Credentials defaults.
const (
	DefaultCredentialsTTL     = 15 * time.Second
	DefaultCredentialsTimeout = 30 * time.Second
)

// CredentialsOptions configure Credentials.
type CredentialsOptions struct {
	// Store is read on scrape. Required.
	Store Scanner
	// Vendors are the configured vendor instance names: each gets a series
	// (0 if empty) for every state, and credentials of any other vendor are
	// counted under OtherLabel. Empty: the vendors found in the store.
	Vendors []string
	// TTL is how long one read of the store serves scrapes: a scrape
	// within TTL of the last read reuses it, so several Prometheus servers
	// or a short scrape interval do not each walk every credential.
	// Default DefaultCredentialsTTL; negative reads on every scrape.
	TTL time.Duration
	// Timeout bounds one read of the store. Default DefaultCredentialsTimeout.
	Timeout time.Duration
	// Clock defaults to time.Now.
	Clock func() time.Time
	// PerVendorOnly leaves out the two series per credential (expiry and
	// last renewal), for fleets so large that they make scrapes heavy
	// (200,000 series at 100,000 credentials); the per-vendor soonest
	// expiry and oldest renewal remain.
	PerVendorOnly bool
}

// Credentials is a collector that reads the store, as cert-manager exports
// certificates: the number of credentials per vendor and state, per
// credential the expiry and the last renewal of its token as Unix
// timestamps (absent before the first token; left out with PerVendorOnly),
// and per vendor the soonest expiry and the oldest renewal among the
// credentials in service, which an alert can watch whatever the fleet's
// size.
//
// Reading a large fleet takes a while (about 15 s for 100,000 credentials
// on a busy 2-core machine, nearly all of it waiting on Redis), longer than
// a scrape may take. So a scrape is served from the last read of the store,
// and a read older than TTL starts a new one in the background; only the
// very first scrape waits for a read (up to Timeout). The age of what is
// served is tokenrelay_credentials_read_age_seconds.
type Credentials struct {
	o CredentialsOptions

	count, expiry, renewal, scrapeErr, age, took *prometheus.Desc
	earliestExpiry, oldestRenewal                *prometheus.Desc

	mu         sync.Mutex // guards the fields below
	snap       credentialsSnapshot
	refreshing bool
	first      chan struct{} // closed when the first read ends
}

// credentialsSnapshot is one read of the store.
type credentialsSnapshot struct {
	metrics []prometheus.Metric
	err     error
	at      time.Time // when the read started; zero before the first
	took    time.Duration
}

var _ prometheus.Collector = (*Credentials)(nil)

// NewCredentials returns the collector; register it on a registry.
func NewCredentials(o CredentialsOptions) (*Credentials, error) {
	if o.Store == nil {
		return nil, fmt.Errorf("metrics: credentials: Store is required")
	}
	if o.TTL == 0 {
		o.TTL = DefaultCredentialsTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultCredentialsTimeout
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Credentials{
		o:     o,
		first: make(chan struct{}),
		count: prometheus.NewDesc(Namespace+"_credentials",
			"Credentials by vendor and state.", []string{"vendor", "state"}, nil),
		expiry: prometheus.NewDesc(Namespace+"_token_expiry_timestamp_seconds",
			"When the credential's current token expires (effective expiry, Unix time).", []string{"vendor", "credential"}, nil),
		renewal: prometheus.NewDesc(Namespace+"_token_last_renewal_timestamp_seconds",
			"When the credential's current token was issued (Unix time).", []string{"vendor", "credential"}, nil),
		earliestExpiry: prometheus.NewDesc(Namespace+"_token_expiry_earliest_timestamp_seconds",
			"The soonest expiry among the vendor's credentials in service (active, refreshing or failing; Unix time).", []string{"vendor"}, nil),
		oldestRenewal: prometheus.NewDesc(Namespace+"_token_last_renewal_oldest_timestamp_seconds",
			"The oldest last renewal among the vendor's credentials in service (Unix time).", []string{"vendor"}, nil),
		scrapeErr: prometheus.NewDesc(Namespace+"_credentials_scrape_error",
			"1 if the last read of the credential store failed (the credential metrics are then missing).", nil, nil),
		age: prometheus.NewDesc(Namespace+"_credentials_read_age_seconds",
			"Age of the read of the credential store these credential metrics come from.", nil, nil),
		took: prometheus.NewDesc(Namespace+"_credentials_read_duration_seconds",
			"How long that read of the credential store took.", nil, nil),
	}, nil
}

// Describe implements prometheus.Collector.
func (c *Credentials) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.count, c.expiry, c.renewal, c.earliestExpiry, c.oldestRenewal, c.scrapeErr, c.age, c.took} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Credentials) Collect(ch chan<- prometheus.Metric) {
	snap, ok := c.snapshot()
	if !ok {
		ch <- prometheus.MustNewConstMetric(c.scrapeErr, prometheus.GaugeValue, 1)
		ch <- prometheus.NewInvalidMetric(c.count, fmt.Errorf("metrics: credentials: the first read of the store has not finished within %s", c.o.Timeout))
		return
	}
	failed := 0.0
	if snap.err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeErr, prometheus.GaugeValue, failed)
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, max(c.o.Clock().Sub(snap.at), 0).Seconds())
	ch <- prometheus.MustNewConstMetric(c.took, prometheus.GaugeValue, snap.took.Seconds())
	if snap.err != nil {
		ch <- prometheus.NewInvalidMetric(c.count, snap.err)
		return
	}
	for _, m := range snap.metrics {
		ch <- m
	}
}

// snapshot returns the last read of the store, starting a new read if it
// is older than TTL. Only before the first read has ended does it wait (up
// to Timeout); ok is false if that read is still going.
func (c *Credentials) snapshot() (credentialsSnapshot, bool) {
	if c.o.TTL < 0 {
		c.refresh()
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.snap, true
	}
	c.mu.Lock()
	if (c.snap.at.IsZero() || c.o.Clock().Sub(c.snap.at) >= c.o.TTL) && !c.refreshing {
		c.refreshing = true
		go c.refresh()
	}
	have := !c.snap.at.IsZero()
	c.mu.Unlock()
	if !have {
		t := time.NewTimer(c.o.Timeout)
		defer t.Stop()
		select {
		case <-c.first:
		case <-t.C:
			return credentialsSnapshot{}, false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap, true
}

// refresh reads the store and keeps the result.
func (c *Credentials) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	at := c.o.Clock()
	start := time.Now()
	metrics, err := c.scan(ctx)
	took := time.Since(start)
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.snap.at.IsZero()
	c.snap = credentialsSnapshot{metrics: metrics, err: err, at: at, took: took}
	c.refreshing = false
	if first {
		close(c.first)
	}
}

func (c *Credentials) scan(ctx context.Context) ([]prometheus.Metric, error) {
	known := map[string]bool{}
	counts := map[string]map[store.State]int{}
	for _, v := range c.o.Vendors {
		known[v] = true
		counts[v] = map[store.State]int{}
	}
	// The soonest expiry and oldest renewal per vendor, of the credentials
	// still in service (a revoked or expired one's token is past anyway).
	type span struct{ earliest, oldest time.Time }
	spans := map[string]span{}
	var out []prometheus.Metric
	err := c.o.Store.Scan(ctx, func(s store.Summary) error {
		vendor := s.Vendor
		if len(c.o.Vendors) > 0 && !known[vendor] {
			vendor = OtherLabel
		}
		if counts[vendor] == nil {
			counts[vendor] = map[store.State]int{}
		}
		counts[vendor][s.State]++
		if !s.ExpiresAt.IsZero() && inService(s.State) {
			t := spans[vendor]
			if t.earliest.IsZero() || s.ExpiresAt.Before(t.earliest) {
				t.earliest = s.ExpiresAt
			}
			if t.oldest.IsZero() || s.IssuedAt.Before(t.oldest) {
				t.oldest = s.IssuedAt
			}
			spans[vendor] = t
		}
		if !s.ExpiresAt.IsZero() && !c.o.PerVendorOnly {
			out = append(out,
				prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, unixSeconds(s.ExpiresAt), vendor, s.ID),
				prometheus.MustNewConstMetric(c.renewal, prometheus.GaugeValue, unixSeconds(s.IssuedAt), vendor, s.ID))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: read credentials: %w", err)
	}
	for vendor, t := range spans {
		out = append(out,
			prometheus.MustNewConstMetric(c.earliestExpiry, prometheus.GaugeValue, unixSeconds(t.earliest), vendor),
			prometheus.MustNewConstMetric(c.oldestRenewal, prometheus.GaugeValue, unixSeconds(t.oldest), vendor))
	}
	for vendor, byState := range counts {
		for _, st := range States {
			out = append(out, prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(byState[st]), vendor, string(st)))
		}
		other := 0 // states this version does not list
		for st, n := range byState {
			if !slices.Contains(States, st) {
				other += n
			}
		}
		if other > 0 {
			out = append(out, prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(other), vendor, OtherLabel))
		}
	}
	return out, nil
}

// inService says whether a credential in state st is expected to keep a
// valid token: active, refreshing or failing (still being retried).
func inService(st store.State) bool {
	return st == store.StateActive || st == store.StateRefreshing || st == store.StateFailing
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }
