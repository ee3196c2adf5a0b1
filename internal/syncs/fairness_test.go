package syncs_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// Thirty clinics' syncs on one HealthSync plan, started after a 100-request
// batch of another clinic was queued, share the plan's window fairly with
// it and with each other: every sync moves a page at a time in turn (at no
// point before the first ends is any sync more than a few pages behind
// another), the batch goes on beside them instead of first, and the vendor
// answers no 429 (the shared budget keeps the plan's window).
func TestManyClinicsSyncsShareOneAccountFairly(t *testing.T) {
	t.Parallel()
	const (
		clinics = 30
		pages   = 8
		bulk    = 100
		limit   = 40
		window  = 2 * time.Second // the plan's hour, compressed
	)
	w := setupVendor(t, syncs.Deps{}, healthSyncFlavour,
		config.RateLimit{Limit: limit, Per: config.Duration(window)}, window)
	w.sb.SetFHIRResources(pages * 10)
	for i := range clinics {
		w.addCredential(clinic(i))
	}
	// The plan's limit holds from now (the keys were checked before).
	w.sb.SetHealthSyncPlan(hsAccount, limit)
	w.sb.ClearRateRecord()

	ctx := context.Background()
	for i := range bulk {
		_, err := w.sub.Submit(ctx, jobs.Request{ID: "bulk-" + strconv.Itoa(i), Vendor: w.fl.name, Credential: credID,
			Method: "GET", Path: "records", Query: jobs.Query{"limit": {"1"}}, Batch: "nightly"})
		require.NoError(t, err)
	}
	for i := range clinics {
		s := jobs.NewSync(clinic(i), "records", jobs.SyncFull)
		s.ID, s.Query = "s-"+clinic(i), jobs.Query{"limit": {"10"}}
		_, err := w.runner.Start(ctx, s)
		require.NoError(t, err)
	}
	w.worker()
	w.worker()

	var evs []syncEvent
	require.Eventually(t, func() bool {
		evs = w.outbox()
		ended, done := 0, 0
		for _, e := range evs {
			switch {
			case e.Type == events.TypeSyncCompleted || e.Type == events.TypeSyncFailed:
				ended++
			case e.Request != "":
				done++
			}
		}
		return ended == clinics && done == bulk
	}, 120*time.Second, 100*time.Millisecond, "every sync and the batch end")

	got := map[string]int{} // pages per sync so far
	batchDone, firstEnd, widest := 0, -1, 0
	for k, e := range evs {
		switch e.Type {
		case events.TypeSyncPage:
			got[e.SyncID]++
			if firstEnd < 0 && len(got) == clinics {
				lo, hi := spread(got)
				widest = max(widest, hi-lo)
				require.LessOrEqual(t, hi-lo, 3, "at event %d, a sync has %d pages and another %d: %v", k, hi, lo, got)
			}
		case events.TypeSyncCompleted:
			if firstEnd < 0 {
				firstEnd = k
				require.GreaterOrEqual(t, batchDone, 3, "the batch goes on beside the syncs")
			}
		case events.TypeSyncFailed:
			t.Fatalf("sync %s failed: %s: %s", e.SyncID, e.Class, e.Message)
		default:
			require.Equal(t, events.TypeRequestCompleted, e.Type, "request %s: %s", e.Request, e.Message)
			batchDone++
		}
	}
	t.Logf("widest spread of pages between syncs before the first ended: %d", widest)
	require.Len(t, got, clinics)
	for id, n := range got {
		require.Equal(t, pages, n, "sync %s", id)
	}
	// Half way through the batch queued before them, every sync had pages
	// delivered: they were not waiting behind it.
	got, batchDone = map[string]int{}, 0
	for _, e := range evs {
		if e.Type == events.TypeSyncPage {
			got[e.SyncID]++
		} else if e.Request != "" {
			if batchDone++; batchDone == bulk/2 {
				break
			}
		}
	}
	lo, hi := spread(got)
	t.Logf("pages per sync when the batch was half done: %d to %d (of %d)", lo, hi, pages)
	require.Len(t, got, clinics)
	require.GreaterOrEqual(t, lo, 1, "every sync had pages before the batch queued ahead of it was half done")

	hits := w.sb.RateRecord(hsAccount)
	refused := 0
	for _, h := range hits {
		if !h.Accepted {
			refused++
		}
	}
	require.Zero(t, refused, "the vendor answered 429 to %d of %d requests", refused, len(hits))
	require.GreaterOrEqual(t, len(hits), clinics*pages+bulk)
}

func clinic(i int) string { return fmt.Sprintf("clinic-%02d", i) }

// spread is the fewest and the most pages of the syncs.
func spread(pages map[string]int) (lo, hi int) {
	ns := make([]int, 0, len(pages))
	for _, n := range pages {
		ns = append(ns, n)
	}
	return slices.Min(ns), slices.Max(ns)
}
