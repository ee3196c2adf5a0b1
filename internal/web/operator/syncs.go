package operator

import (
	"context"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/adminclient"
)

// Syncs lists the syncs started most recently (syncs.Runner satisfies it).
type Syncs interface {
	List(ctx context.Context, limit int) ([]adminclient.SyncStatus, error)
}

// syncsShown is how many syncs the page lists.
const syncsShown = 200

type syncRow struct {
	adminclient.SyncStatus
	// Percent is the progress, -1 when the vendor gives no total.
	Percent int
	Rate    float64
	ETA     time.Duration // -1 unknown
	Class   string
}

type syncsPage struct {
	layout
	Configured bool
	Rows       []syncRow
	Running    int
}

// syncs shows the latest syncs: state, progress, rate and estimated finish.
func (p *pages) syncs(w http.ResponseWriter, r *http.Request) {
	l := p.layout(r, "Syncs", "syncs")
	l.Refresh = p.refreshSeconds(r)
	page := syncsPage{layout: l, Configured: p.d.Syncs != nil}
	if p.d.Syncs == nil {
		p.render(w, http.StatusOK, "syncs.html", page)
		return
	}
	list, err := p.d.Syncs.List(r.Context(), syncsShown)
	if err != nil {
		p.d.Logger.Error().Err(err).Msg("operator: read syncs")
		page.Error = "The syncs could not be read; this page will try again."
		p.render(w, http.StatusServiceUnavailable, "syncs.html", page)
		return
	}
	for _, s := range list {
		row := syncRow{SyncStatus: s, Percent: -1, Rate: s.Rate(), ETA: s.ETA()}
		if pr := s.Progress(); pr >= 0 {
			row.Percent = int(pr * 100)
		}
		switch s.State {
		case "running":
			row.Class = "ok"
			page.Running++
		case "completed":
			row.Class = "ok"
		default:
			row.Class = "out"
		}
		page.Rows = append(page.Rows, row)
	}
	p.render(w, http.StatusOK, "syncs.html", page)
}
