package syncs_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// A full sync of HealthSync's records (Link header paging, an API key
// through HealthSync's adapter) and of the FHIR portal's Patients (next
// links, a SMART client-credentials token) delivers every resource once;
// resources changed while it runs are what the next incremental run
// delivers (HealthSync: updated_since, from a mark that is the vendor's
// Date; the portal: _lastUpdated, from the Bundle's meta.lastUpdated).
func TestFullThenIncrementalOfEachKind(t *testing.T) {
	t.Parallel()
	for _, fl := range []flavour{healthSyncFlavour, portalFlavour} {
		t.Run(string(fl.kind), func(t *testing.T) {
			t.Parallel()
			w := setupVendor(t, syncs.Deps{Overlap: time.Millisecond}, fl, config.RateLimit{}, 0)
			const n, count = 250, 50
			w.sb.SetFHIRResources(n)
			changed := rand.Perm(n)[:40]
			w.gate.set(func(page int, _ *http.Request) bool {
				if page == 3 { // while page 3 of 5 is being fetched
					w.sb.UpdateFHIRResources(fl.resource, changed...)
				}
				return true
			})
			w.worker()
			before := time.Now().Add(-time.Second)
			w.start("full", jobs.SyncFull, strconv.Itoa(count))
			evs := w.waitEnd("full", 40*time.Second)
			last := evs[len(evs)-1]
			require.Equal(t, events.TypeSyncCompleted, last.Type, "%s: %s", last.Class, last.Message)
			require.Equal(t, n/count, last.Pages)
			got, _ := delivered(t, evs)
			require.Len(t, got, n, "every resource delivered")
			for id, k := range got {
				require.Equal(t, 1, k, "resource %s delivered %d times", id, k)
			}
			mark := last.Mark
			require.False(t, mark.Before(before) || mark.After(time.Now()), "the mark %s is the vendor's clock at the first page", mark)
			queries, dates := w.gate.served()
			require.Len(t, queries, n/count)
			if fl.kind == config.KindHealthSync {
				first, err := http.ParseTime(dates[0])
				require.NoError(t, err)
				require.True(t, mark.Equal(first), "the mark %s is the first page's Date %s", mark, dates[0])
				for _, q := range queries[1:] {
					require.NotEmpty(t, q.Get("after"), "later pages follow the Link header's cursor")
				}
			}
			st, err := w.runner.Status(context.Background(), fl.name, credID, "full")
			require.NoError(t, err)
			require.Equal(t, syncs.StateCompleted, st.State)
			require.Equal(t, n, st.Resources)

			w.gate.set(nil)
			w.start("incremental", jobs.SyncIncremental, strconv.Itoa(count))
			evs = w.waitEnd("incremental", 40*time.Second)
			last = evs[len(evs)-1]
			require.Equal(t, events.TypeSyncCompleted, last.Type, "%s: %s", last.Class, last.Message)
			got, versions := delivered(t, evs)
			require.Len(t, got, len(changed), "the incremental run delivers what changed, and only that")
			for _, i := range changed {
				id := strconv.Itoa(1001 + i)
				require.Contains(t, got, id)
				require.Equal(t, "2", versions[id], "a change carries its version")
			}
			// (HealthSync's Date counts whole seconds: the mark may stay.)
			require.False(t, last.Mark.Before(mark), "the mark never moves back")
			queries, _ = w.gate.served()
			since := queries[n/count]
			if fl.kind == config.KindHealthSync {
				require.Empty(t, since.Get("_lastUpdated"))
				at, err := time.Parse(time.RFC3339Nano, since.Get("updated_since"))
				require.NoError(t, err, "HealthSync is asked with updated_since: %v", since)
				require.True(t, at.Equal(mark.Add(-time.Millisecond)), "from the mark less the overlap: %s", at)
			} else {
				require.True(t, strings.HasPrefix(since.Get("_lastUpdated"), "gt"), "FHIR is asked with _lastUpdated=gt: %v", since)
			}
		})
	}
}
