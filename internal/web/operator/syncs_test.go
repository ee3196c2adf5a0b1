package operator_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
)

type fakeSyncs []adminclient.SyncStatus

func (f fakeSyncs) List(context.Context, int) ([]adminclient.SyncStatus, error) { return f, nil }

func TestSyncsPageShowsStateProgressRateAndETA(t *testing.T) {
	t.Parallel()
	none := setup(t, nil)
	_, body := get(t, none.browser(t), none.srv.URL+"/ui/syncs")
	require.Contains(t, body, "Syncs are not enabled")

	t0 := storetest.T0
	b := setup(t, func(d *operator.Deps) {
		d.Syncs = fakeSyncs{
			{ID: "nightly-42", Vendor: "halaxy-au", Credential: "clinic-42", Resource: "Patient", Mode: "incremental",
				State: "running", Pages: 25, Resources: 2500, Total: 10000, StartedAt: t0.Add(-50 * time.Second), UpdatedAt: t0},
			{ID: "broken", Vendor: "healthsync", Credential: "hs-1", Resource: "records", Mode: "full", State: "failed",
				ErrorClass: "next_link_refused", Message: "page 3: the next link leaves the vendor's base URL", Total: -1,
				StartedAt: t0.Add(-time.Minute), UpdatedAt: t0},
		}
	})
	_, body = get(t, b.browser(t), b.srv.URL+"/ui/syncs")
	require.Contains(t, body, "1 running")
	require.Regexp(t, `(?s)id="sync-nightly-42">.*clinic-42.*Patient.*incremental.*running.*25%.*>25<.*2500 / 10000.*50\.0/s.*2m30s`, body)
	require.Regexp(t, `(?s)id="sync-broken">.*failed: next_link_refused.*leaves the vendor&#39;s base URL.*no total`, body)
}
