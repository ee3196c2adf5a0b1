package operator

import (
	"net/http"
	"strings"
	"time"
)

type budgetRow struct {
	Budget
	Percent int // used, of the limit
	Class   string
	Paused  bool
}

type budgetsPage struct {
	layout
	Configured bool
	Rows       []budgetRow
	// PerClient: some rows are of a vendor that limits each OAuth client,
	// of which the page shows only the accounts in use.
	PerClient bool
}

// budgets shows used against limit per vendor account, and whether a 429
// paused it. Of a vendor that limits each OAuth client it shows the
// accounts the Budgets dependency chose (those used within the window),
// and how many more there are.
func (p *pages) budgets(w http.ResponseWriter, r *http.Request) {
	l := p.layout(r, "Rate budgets", "budgets")
	l.Refresh = p.refreshSeconds(r)
	page := budgetsPage{layout: l, Configured: p.d.Budgets != nil}
	if p.d.Budgets == nil {
		p.render(w, http.StatusOK, "budgets.html", page)
		return
	}
	list, err := p.d.Budgets.Budgets(r.Context())
	if err != nil {
		p.d.Logger.Error().Err(err).Msg("operator: read budgets")
		page.Error = "The budgets could not be read; this page will try again."
		p.render(w, http.StatusServiceUnavailable, "budgets.html", page)
		return
	}
	for _, b := range list {
		row := budgetRow{Budget: b, Paused: b.PausedUntil.After(l.Now)}
		if b.Limit > 0 {
			row.Percent = max(0, min(100, 100*b.Used/b.Limit))
		}
		switch {
		case row.Paused || (b.Limit > 0 && b.Remaining <= 0):
			row.Class = "out"
		case row.Percent >= 80:
			row.Class = "low"
		default:
			row.Class = "ok"
		}
		page.Rows = append(page.Rows, row)
		page.PerClient = page.PerClient || b.Idle || strings.Contains(b.Account, "/")
	}
	p.render(w, http.StatusOK, "budgets.html", page)
}

// per writes a budget window: "1m", "1h".
func per(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	s := d.String()
	for _, suffix := range []string{"m0s", "h0m"} {
		if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
			s = s[:len(s)-len(suffix)+1]
		}
	}
	return s
}
