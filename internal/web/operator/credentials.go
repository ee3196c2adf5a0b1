package operator

import (
	"container/heap"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
)

// states are the credential states, in the order the filter shows them.
var states = []store.State{store.StateActive, store.StateRefreshing, store.StateFailing, store.StateExpired, store.StateRevoked}

// listQuery is one page of the credentials view: the filters and where the
// page starts (after an id) or ends (before an id).
type listQuery struct {
	Vendor, State, Prefix string
	After, Before         string
	Size                  int
}

func (q listQuery) matches(s store.Summary) bool {
	return (q.Vendor == "" || s.Vendor == q.Vendor) && (q.State == "" || string(s.State) == q.State) &&
		strings.HasPrefix(s.ID, q.Prefix)
}

// listResult is a page of credentials, sorted by id, and the counts the
// filters show.
type listResult struct {
	Rows    []store.Summary
	Total   int            // credentials in the store
	Matched int            // credentials passing every filter
	States  map[string]int // by state, among those passing the vendor and id filters
	Vendors []string       // every vendor seen, sorted
	HasPrev bool
	HasNext bool
}

// list reads the store once, keeping only one page of rows (a bounded heap
// of Size+1 ids), so that memory and rendering stay small at any size.
func list(ctx context.Context, creds Credentials, q listQuery) (listResult, error) {
	res := listResult{States: map[string]int{}}
	vendors := map[string]bool{}
	backward := q.Before != ""
	// The page is the Size+1 ids nearest the cursor on its side: the
	// smallest above After, or the largest below Before.
	h := &pageHeap{farther: func(a, b string) bool { return a > b }}
	if backward {
		h.farther = func(a, b string) bool { return a < b }
	}
	keep := q.Size + 1
	err := creds.Scan(ctx, func(s store.Summary) error {
		res.Total++
		vendors[s.Vendor] = true
		if (q.Vendor == "" || s.Vendor == q.Vendor) && strings.HasPrefix(s.ID, q.Prefix) {
			res.States[string(s.State)]++
		}
		if !q.matches(s) {
			return nil
		}
		res.Matched++
		if (backward && s.ID >= q.Before) || (!backward && q.After != "" && s.ID <= q.After) {
			return nil
		}
		if h.Len() < keep {
			heap.Push(h, s)
		} else if h.farther(h.rows[0].ID, s.ID) {
			h.rows[0] = s
			heap.Fix(h, 0)
		}
		return nil
	})
	if err != nil {
		return listResult{}, err
	}
	rows := h.rows
	slices.SortFunc(rows, func(a, b store.Summary) int { return strings.Compare(a.ID, b.ID) })
	more := len(rows) > q.Size
	if backward {
		if more {
			rows = rows[1:]
		}
		res.HasPrev, res.HasNext = more, true
	} else {
		if more {
			rows = rows[:q.Size]
		}
		res.HasPrev, res.HasNext = q.After != "", more
	}
	res.Rows = rows
	for v := range vendors {
		res.Vendors = append(res.Vendors, v)
	}
	slices.Sort(res.Vendors)
	return res, nil
}

// pageHeap keeps the rows nearest the cursor; its top is the farthest one,
// the first to go when a nearer row comes.
type pageHeap struct {
	rows    []store.Summary
	farther func(a, b string) bool
}

func (h *pageHeap) Len() int           { return len(h.rows) }
func (h *pageHeap) Less(i, j int) bool { return h.farther(h.rows[i].ID, h.rows[j].ID) }
func (h *pageHeap) Swap(i, j int)      { h.rows[i], h.rows[j] = h.rows[j], h.rows[i] }
func (h *pageHeap) Push(x any)         { h.rows = append(h.rows, x.(store.Summary)) }
func (h *pageHeap) Pop() any {
	last := h.rows[len(h.rows)-1]
	h.rows = h.rows[:len(h.rows)-1]
	return last
}

// row is a credential as the pages draw it.
type row struct {
	store.Summary
	Expires  bar
	Refresh  bar
	Actions  []string
	Lifetime time.Duration
}

// bar is a time-left bar: Percent of the token's lifetime is left.
type bar struct {
	Percent int
	Label   string
	Class   string // ok, low, out
	Show    bool
}

func (p *pages) row(s store.Summary, now time.Time) row {
	r := row{Summary: s, Lifetime: s.ExpiresAt.Sub(s.IssuedAt)}
	r.Expires = timeBar(now, s.ExpiresAt, r.Lifetime)
	if s.State != store.StateRevoked {
		r.Refresh = timeBar(now, s.NextRefresh, r.Lifetime)
		if r.Refresh.Show && !now.Before(s.NextRefresh) {
			r.Refresh.Label = "due now"
		}
	}
	r.Actions = p.actionsFor(s)
	return r
}

// timeBar draws how much of lifetime is left until at.
func timeBar(now, at time.Time, lifetime time.Duration) bar {
	if at.IsZero() {
		return bar{Label: "-"}
	}
	left := at.Sub(now)
	b := bar{Show: true, Label: until(now, at)}
	if lifetime > 0 {
		b.Percent = int(max(0, min(100, 100*left/lifetime)))
	}
	switch {
	case left <= 0:
		b.Class, b.Percent = "out", 0
	case b.Percent < 25:
		b.Class = "low"
	default:
		b.Class = "ok"
	}
	return b
}

type credentialsPage struct {
	layout
	Query    listQuery
	Result   listResult
	Rows     []row
	States   []store.State
	PrevURL  string
	NextURL  string
	FirstURL string
}

// credentials is the paginated, filtered credentials view.
func (p *pages) credentials(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := listQuery{Vendor: v.Get("vendor"), State: v.Get("state"), Prefix: strings.TrimSpace(v.Get("q")),
		After: v.Get("after"), Before: v.Get("before"), Size: p.d.PageSize}
	l := p.layout(r, "Credentials", "credentials")
	l.Refresh = p.refreshSeconds(r)
	start := p.d.Clock()
	res, err := list(r.Context(), p.d.Credentials, q)
	if took := p.d.Clock().Sub(start); l.Refresh > 0 && r.URL.Query().Get("refresh") == "" {
		// A big store takes a while to read: an open page must not keep
		// Redis busy, so it reloads no more often than ten reads' time.
		l.Refresh = max(l.Refresh, int((10*took+time.Second-1)/time.Second))
	}
	if err != nil {
		p.d.Logger.Error().Err(err).Msg("operator: list credentials")
		l.Error = "The credential store did not answer; this page will try again."
		p.render(w, http.StatusServiceUnavailable, "credentials.html", credentialsPage{layout: l, Query: q, States: states})
		return
	}
	page := credentialsPage{layout: l, Query: q, Result: res, States: states}
	for _, s := range res.Rows {
		page.Rows = append(page.Rows, p.row(s, l.Now))
	}
	link := func(key, id string) string {
		u := url.Values{}
		for _, k := range []string{"vendor", "state", "q", "refresh"} {
			if v.Get(k) != "" {
				u.Set(k, v.Get(k))
			}
		}
		if key != "" {
			u.Set(key, id)
		}
		return Prefix + "credentials?" + u.Encode()
	}
	page.FirstURL = link("", "")
	if len(res.Rows) > 0 {
		if res.HasPrev {
			page.PrevURL = link("before", res.Rows[0].ID)
		}
		if res.HasNext {
			page.NextURL = link("after", res.Rows[len(res.Rows)-1].ID)
		}
	}
	p.render(w, http.StatusOK, "credentials.html", page)
}

type credentialPage struct {
	layout
	Row    row
	Events []eventRow
}

// credential shows one credential, its actions and its latest events.
func (p *pages) credential(w http.ResponseWriter, r *http.Request) {
	l := p.layout(r, "Credential "+r.PathValue("id"), "credentials")
	l.Refresh = p.refreshSeconds(r)
	if done := r.URL.Query().Get("done"); done != "" {
		if a, ok := actionByName[done]; ok {
			l.Flash = a.Done
		}
	}
	sum, status, problem := p.summary(r.Context(), r.PathValue("id"))
	if problem != "" {
		l.Refresh, l.Error = 0, problem
		p.render(w, status, "error.html", l)
		return
	}
	page := credentialPage{layout: l, Row: p.row(sum, l.Now)}
	page.Events = p.recentFor(r.Context(), sum.ID, 500, 20)
	p.render(w, http.StatusOK, "credential.html", page)
}

// summary reads one credential's secret-free summary, or says why not
// (problem, for the page) with the status to answer.
func (p *pages) summary(ctx context.Context, id string) (sum store.Summary, status int, problem string) {
	c, err := p.d.Credentials.Get(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Summary{}, http.StatusNotFound, "There is no credential " + id + "."
	case err != nil:
		p.d.Logger.Error().Err(err).Str("credential", id).Msg("operator: get credential")
		return store.Summary{}, http.StatusServiceUnavailable, "The credential store did not answer; try again."
	}
	return store.Summary{ID: c.ID, Vendor: c.Vendor, ClientIDFingerprint: secret.Fingerprint(c.ClientID), State: c.State,
		Generation: c.Generation, IssuedAt: c.Token.IssuedAt, ExpiresAt: c.Token.ExpiresAt, NextRefresh: c.NextRefresh,
		Failures: c.Failures, LastClass: c.LastClass, LastError: c.LastError, UpdatedAt: c.UpdatedAt}, http.StatusOK, ""
}
