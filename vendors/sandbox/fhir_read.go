package sandbox

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
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

// resourceTypeRE is what a FHIR resource type looks like (Patient,
// Appointment, ...): anything else under an API's base is not found.
var resourceTypeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

// fhirReads is the synthetic data of the generic reads: count resources of
// every type, ids 1001 and up (Patient's first three are fakePatients).
type fhirReads struct {
	mu    sync.Mutex
	count int
}

func (f *fhirReads) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// SetFHIRResources sets how many resources of each type the Halaxy and
// generic FHIR reads serve (GET {base}{type} pages through them); n <= 0
// restores DefaultFHIRResources.
func (s *Sandbox) SetFHIRResources(n int) {
	if n <= 0 {
		n = DefaultFHIRResources
	}
	s.reads.mu.Lock()
	s.reads.count = n
	s.reads.mu.Unlock()
}

// resource is the i-th resource of type typ.
func resource(typ string, i int) map[string]any {
	if typ == "Patient" && i < len(fakePatients) {
		return fakePatients[i]
	}
	id := strconv.Itoa(1001 + i)
	r := map[string]any{"resourceType": typ, "id": id}
	if typ == "Patient" {
		r["active"] = true
		r["name"] = []map[string]any{{"use": "official", "family": "Test" + id, "given": []string{"Pat"}}}
	}
	return r
}

// serveRead answers GET {base}{type}[/{id}] once the request passed the
// token and the rate window: a read of one resource, or a searchset Bundle
// paged by _count (1 to 100, default 20) and page (from 1), with a next
// link while more remain.
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
		writeJSON(w, http.StatusOK, mediaFHIR, resource(typ, i-1001))
		return
	}
	q := r.URL.Query()
	count, page := defaultFHIRCount, 1
	if v := q.Get("_count"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < 1 || c > maxFHIRCount {
			writeOutcome(w, http.StatusBadRequest, "invalid", "_count must be 1 to 100")
			return
		}
		count = c
	}
	if v := q.Get("page"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 {
			writeOutcome(w, http.StatusBadRequest, "invalid", "page must be 1 or more")
			return
		}
		page = p
	}
	base := baseURL(r, fl.base)
	from := min((page-1)*count, n)
	to := min(from+count, n)
	entries := make([]map[string]any, 0, to-from)
	for i := from; i < to; i++ {
		res := resource(typ, i)
		entries = append(entries, map[string]any{
			"fullUrl":  base + typ + "/" + res["id"].(string),
			"resource": res,
			"search":   map[string]string{"mode": "match"},
		})
	}
	pageURL := func(p int) string {
		return base + typ + "?" + url.Values{"_count": {strconv.Itoa(count)}, "page": {strconv.Itoa(p)}}.Encode()
	}
	links := []map[string]string{{"relation": "self", "url": pageURL(page)}}
	if to < n {
		links = append(links, map[string]string{"relation": "next", "url": pageURL(page + 1)})
	}
	writeJSON(w, http.StatusOK, mediaFHIR, map[string]any{
		"resourceType": "Bundle",
		"id":           newToken()[:16],
		"meta":         map[string]string{"lastUpdated": now.UTC().Format("2006-01-02T15:04:05Z")},
		"type":         "searchset",
		"total":        n,
		"link":         links,
		"entry":        entries,
	})
}
