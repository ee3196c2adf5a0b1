package sandbox

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paging of the generic FHIR reads.
const (
	defaultFHIRCount = 20
	maxFHIRCount     = 100
	// DefaultFHIRResources is how many resources of each type the generic
	// reads serve until SetFHIRResources says otherwise.
	DefaultFHIRResources = 3
)

// fhirInstant is how the sandbox writes FHIR instants (meta.lastUpdated):
// to the millisecond, so that changes a few milliseconds apart differ.
const fhirInstant = "2006-01-02T15:04:05.000Z07:00"

// resourceTypeRE is what a FHIR resource type looks like (Patient,
// Appointment, ...): anything else under an API's base is not found.
var resourceTypeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

// fhirReads is the synthetic data of the generic reads (and of HealthSync's
// records): count resources of every type, ids 1001 and up (Patient's
// first three are fakePatients), each at version 1 last updated at origin
// until UpdateFHIRResources changes it.
type fhirReads struct {
	mu      sync.Mutex
	count   int
	origin  time.Time
	changes map[string]map[int]change // type -> index -> its last change
}

// change is a resource's version and when it was made.
type change struct {
	version int
	at      time.Time
}

func (f *fhirReads) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// meta is the version and last update of the i-th resource of typ.
func (f *fhirReads) meta(typ string, i int) change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.metaLocked(typ, i)
}

func (f *fhirReads) metaLocked(typ string, i int) change {
	if c, ok := f.changes[typ][i]; ok {
		return c
	}
	return change{version: 1, at: f.origin}
}

// SetFHIRResources sets how many resources of each type the Halaxy and
// generic FHIR reads (and HealthSync's records) serve (GET {base}{type}
// pages through them); n <= 0 restores DefaultFHIRResources. Resources
// added are at version 1, last updated when the sandbox started.
func (s *Sandbox) SetFHIRResources(n int) {
	if n <= 0 {
		n = DefaultFHIRResources
	}
	s.reads.mu.Lock()
	s.reads.count = n
	s.reads.mu.Unlock()
}

// UpdateFHIRResources changes the resources of type typ at the given
// indexes (0 is id 1001), as a clinic editing them would: each gets a new
// versionId and a meta.lastUpdated of the sandbox's clock now, so a search
// with _lastUpdated=gt<earlier> finds it. Indexes out of range are
// ignored. HealthSync's records are type "records".
func (s *Sandbox) UpdateFHIRResources(typ string, indexes ...int) {
	now := s.clock()
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	if s.reads.changes == nil {
		s.reads.changes = map[string]map[int]change{}
	}
	m := s.reads.changes[typ]
	if m == nil {
		m = map[int]change{}
		s.reads.changes[typ] = m
	}
	for _, i := range indexes {
		if i < 0 || i >= s.reads.count {
			continue
		}
		c := s.reads.metaLocked(typ, i)
		m[i] = change{version: c.version + 1, at: now}
	}
}

// resource is the i-th resource of type typ, with its meta.
func resource(typ string, i int, c change) map[string]any {
	r := map[string]any{"resourceType": typ, "id": strconv.Itoa(1001 + i)}
	if typ == "Patient" && i < len(fakePatients) {
		for k, v := range fakePatients[i] {
			r[k] = v
		}
	} else if typ == "Patient" {
		r["active"] = true
		r["name"] = []map[string]any{{"use": "official", "family": "Test" + r["id"].(string), "given": []string{"Pat"}}}
	}
	r["meta"] = map[string]string{"versionId": strconv.Itoa(c.version), "lastUpdated": c.at.UTC().Format(fhirInstant)}
	return r
}

// search is one page of a search over the synthetic data: the resources
// after index after (-1: from the start) whose last update is after since
// (zero: all), at most count, and how many match in all.
type search struct {
	typ          string
	count, after int
	since        time.Time
}

// run returns the page's indexes and their metas, whether more match
// after it, and the total.
func (f *fhirReads) run(q search) (idx []int, metas []change, more bool, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < f.count; i++ {
		c := f.metaLocked(q.typ, i)
		if !q.since.IsZero() && !c.at.After(q.since) {
			continue
		}
		total++
		if i <= q.after {
			continue
		}
		if len(idx) == q.count {
			more = true
			continue
		}
		idx, metas = append(idx, i), append(metas, c)
	}
	return idx, metas, more, total
}

// parseSearch reads the paging and filter parameters common to the
// searches: _count (1 to 100, default 20), _after (the keyset cursor the
// next links carry: the index of the last resource of the page before),
// page (from 1, offset paging, for old clients) and _lastUpdated=gt<instant>
// (lastParam names it: HealthSync calls it updated_since, without "gt").
func parseSearch(q url.Values, typ, lastParam string) (search, string) {
	s := search{typ: typ, count: defaultFHIRCount, after: -1}
	if v := q.Get("_count"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < 1 || c > maxFHIRCount {
			return s, "_count must be 1 to 100"
		}
		s.count = c
	}
	if v := q.Get("page"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 {
			return s, "page must be 1 or more"
		}
		s.after = (p-1)*s.count - 1
	}
	if v := q.Get("_after"); v != "" {
		a, err := strconv.Atoi(v)
		if err != nil || a < -1 {
			return s, "_after must be a resource index"
		}
		s.after = a
	}
	if v := q.Get(lastParam); v != "" {
		if lastParam == "_lastUpdated" {
			var ok bool
			if v, ok = strings.CutPrefix(v, "gt"); !ok {
				return s, "_lastUpdated supports the gt prefix only"
			}
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return s, lastParam + " must be an instant like 2025-01-02T03:04:05Z"
		}
		s.since = t
	}
	return s, ""
}

// nextQuery is the query of the page after the one ending at index last:
// the search's own parameters with the keyset cursor.
func nextQuery(q url.Values, count, last int) string {
	next := url.Values{}
	for k, v := range q {
		if k != "page" && k != "_after" {
			next[k] = v
		}
	}
	next.Set("_count", strconv.Itoa(count))
	next.Set("_after", strconv.Itoa(last))
	return next.Encode()
}

// serveRead answers GET {base}{type}[/{id}] once the request passed the
// token and the rate window: a read of one resource, or a searchset Bundle
// (parseSearch) with its total, meta.lastUpdated (the server's clock when
// it answered) and a next link while more remain. Paging is by keyset, so
// resources changed while a client pages are neither skipped nor repeated
// by the pages still to come.
func (s *Sandbox) serveRead(w http.ResponseWriter, r *http.Request, fl flavor, now time.Time) {
	typ := r.PathValue("type")
	if !resourceTypeRE.MatchString(typ) {
		writeOutcome(w, http.StatusNotFound, "not-found", "unknown resource type")
		return
	}
	n := s.reads.size()
	if id := r.PathValue("id"); id != "" {
		i, err := strconv.Atoi(id)
		if err != nil || i < 1001 || i >= 1001+n {
			writeOutcome(w, http.StatusNotFound, "not-found", typ+"/"+id+" is not known")
			return
		}
		writeJSON(w, http.StatusOK, mediaFHIR, resource(typ, i-1001, s.reads.meta(typ, i-1001)))
		return
	}
	q := r.URL.Query()
	sr, problem := parseSearch(q, typ, "_lastUpdated")
	if problem != "" {
		writeOutcome(w, http.StatusBadRequest, "invalid", problem)
		return
	}
	idx, metas, more, total := s.reads.run(sr)
	base := baseURL(r, fl.base)
	entries := make([]map[string]any, 0, len(idx))
	for k, i := range idx {
		res := resource(typ, i, metas[k])
		entries = append(entries, map[string]any{
			"fullUrl":  base + typ + "/" + res["id"].(string),
			"resource": res,
			"search":   map[string]string{"mode": "match"},
		})
	}
	links := []map[string]string{{"relation": "self", "url": base + typ + "?" + r.URL.RawQuery}}
	if more {
		links = append(links, map[string]string{"relation": "next", "url": base + typ + "?" + nextQuery(q, sr.count, idx[len(idx)-1])})
	}
	writeJSON(w, http.StatusOK, mediaFHIR, map[string]any{
		"resourceType": "Bundle",
		"id":           newToken()[:16],
		"meta":         map[string]string{"lastUpdated": now.UTC().Format(fhirInstant)},
		"type":         "searchset",
		"total":        total,
		"link":         links,
		"entry":        entries,
	})
}
