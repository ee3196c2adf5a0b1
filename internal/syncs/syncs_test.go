package syncs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// A 10,000-resource sync whose worker is killed while a page is in flight
// goes on from its cursor in another worker: every resource is delivered
// once, and at most one page is fetched twice.
func TestSyncKilledMidPageResumesFromCursor(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{})
	w.sb.SetFHIRResources(10000)
	const pages = 100
	killAt := 2 + rand.IntN(pages-2) // a page between the second and the last
	inFlight := make(chan struct{})
	w.gate.set(func(n int, _ *http.Request) bool {
		if n == killAt {
			close(inFlight)
			return false // the page hangs until its worker is gone
		}
		return true
	})
	stopFirst := w.worker()
	w.start("big", jobs.SyncFull, "100")
	select {
	case <-inFlight:
	case <-time.After(40 * time.Second):
		t.Fatalf("page %d was never requested", killAt)
	}
	stopFirst()
	w.worker()

	// Usually seconds; generous because the page in flight comes back
	// through asynq (requeued at the first worker's shutdown, or recovered
	// by asynq a minute or two later if that requeue is lost under load).
	evs := w.waitEnd("big", 150*time.Second)
	last := evs[len(evs)-1]
	require.Equal(t, events.TypeSyncCompleted, last.Type, "%s: %s", last.Class, last.Message)
	require.Equal(t, pages, last.Pages)
	count, _ := delivered(t, evs)
	require.Len(t, count, 10000, "every resource delivered")
	for id, n := range count {
		require.Equal(t, 1, n, "resource %s delivered %d times", id, n)
	}
	for i, e := range evs[:len(evs)-1] {
		require.Equal(t, i+1, e.Page, "pages in order, each once")
		require.Equal(t, "sync.page."+vendorName+"."+credID, e.Subject)
	}
	require.LessOrEqual(t, w.gate.count(), pages+1, "pages fetched (killed at page %d)", killAt)

	st, err := w.runner.Status(context.Background(), vendorName, credID, "big")
	require.NoError(t, err)
	require.Equal(t, syncs.StateCompleted, st.State)
	require.Equal(t, 10000, st.Resources)
	require.Equal(t, 10000, st.Total)
}

// Resources changed while a sync runs are all delivered by the next
// incremental run: the mark is the vendor's clock when the first page was
// served, and moves only when a run reaches its last page.
func TestIncrementalDeliversChangesMadeDuringTheSync(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{Overlap: time.Millisecond})
	w.sb.SetFHIRResources(2000)
	changed := rand.Perm(2000)[:500]
	w.gate.set(func(n int, _ *http.Request) bool {
		if n == 5 { // while page 5 of 20 is being fetched
			w.sb.UpdateFHIRResources("Patient", changed...)
		}
		return true
	})
	w.worker()
	w.start("night-1", jobs.SyncIncremental, "100") // no mark yet: everything
	evs := w.waitEnd("night-1", 40*time.Second)
	require.Equal(t, events.TypeSyncCompleted, evs[len(evs)-1].Type)
	first, _ := delivered(t, evs)
	require.Len(t, first, 2000)
	mark := evs[len(evs)-1].Mark
	require.False(t, mark.IsZero(), "the completed event carries the new mark")

	w.start("night-2", jobs.SyncIncremental, "100")
	evs = w.waitEnd("night-2", 40*time.Second)
	require.Equal(t, events.TypeSyncCompleted, evs[len(evs)-1].Type)
	got, versions := delivered(t, evs)
	want := map[string]bool{}
	for _, i := range changed {
		want[strconv.Itoa(1001+i)] = true
	}
	require.Len(t, got, 500, "the next run delivers what changed, and only that")
	for id := range got {
		require.True(t, want[id], "resource %s did not change", id)
		require.Equal(t, "2", versions[id], "a change carries its versionId")
	}
	require.True(t, evs[len(evs)-1].Mark.After(mark), "the mark moved on")

	// A run with nothing new delivers nothing (one empty page).
	w.start("night-3", jobs.SyncIncremental, "100")
	evs = w.waitEnd("night-3", 20*time.Second)
	got, _ = delivered(t, evs)
	require.Empty(t, got)
}

// A next link to another host is refused: the sync fails at its cursor
// and nothing is sent there.
func TestNextLinkToAnotherHostIsRefused(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{})
	w.gate.serve = func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/fhir+json")
		_ = json.NewEncoder(rw).Encode(map[string]any{
			"resourceType": "Bundle", "type": "searchset", "total": 2,
			"meta":  map[string]string{"lastUpdated": time.Now().UTC().Format(time.RFC3339Nano)},
			"link":  []map[string]string{{"relation": "next", "url": "https://attacker.example/main/Patient?page=2"}},
			"entry": []map[string]any{{"resource": map[string]string{"resourceType": "Patient", "id": "1"}}},
		})
	}
	w.worker()
	w.start("evil", jobs.SyncFull, "1")
	evs := w.waitEnd("evil", 20*time.Second)
	require.Len(t, evs, 2)
	require.Equal(t, events.TypeSyncPage, evs[0].Type, "the page itself is delivered")
	last := evs[1]
	require.Equal(t, events.TypeSyncFailed, last.Type)
	require.Equal(t, syncs.ClassNextLinkRefused, last.Class)
	require.Contains(t, last.Message, "attacker.example")
	require.Equal(t, 1, last.Cursor.Page)
	require.Empty(t, last.Cursor.Next)
	require.Equal(t, 1, w.gate.count())
}

// Cancel stops a sync between pages: the page in flight is delivered,
// then sync.failed (cancelled) with the cursor, and no further page.
func TestCancelStopsBetweenPages(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{})
	w.sb.SetFHIRResources(1000)
	hold, release := make(chan struct{}), make(chan struct{})
	w.gate.set(func(n int, _ *http.Request) bool {
		if n == 3 {
			close(hold)
			<-release
		}
		return true
	})
	w.worker()
	w.start("stop-me", jobs.SyncFull, "10")
	<-hold
	st, err := w.runner.Cancel(context.Background(), vendorName, "someone-else", "stop-me")
	require.ErrorIs(t, err, syncs.ErrNotFound, "a sync is cancelled only for its own credential")
	st, err = w.runner.Cancel(context.Background(), vendorName, credID, "stop-me")
	require.NoError(t, err)
	require.True(t, st.CancelRequested)
	close(release)
	evs := w.waitEnd("stop-me", 20*time.Second)
	last := evs[len(evs)-1]
	require.Equal(t, events.TypeSyncFailed, last.Type)
	require.Equal(t, syncs.ClassCancelled, last.Class)
	require.Equal(t, 3, last.Cursor.Page)
	require.Equal(t, 30, last.Cursor.Resources)
	require.Contains(t, last.Cursor.Next, "_after=")
	require.Len(t, evs, 4, "three pages, then the end")
	require.Equal(t, 3, w.gate.count(), "no page after the cancel")
	st, err = w.runner.Status(context.Background(), vendorName, credID, "stop-me")
	require.NoError(t, err)
	require.Equal(t, syncs.StateCancelled, st.State)
}

// A search with more pages than the cap fails with page_cap at its cursor.
func TestPageCap(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{MaxPages: 3})
	w.sb.SetFHIRResources(100)
	w.worker()
	w.start("capped", jobs.SyncFull, "10")
	evs := w.waitEnd("capped", 20*time.Second)
	last := evs[len(evs)-1]
	require.Equal(t, syncs.ClassPageCap, last.Class)
	require.Equal(t, 3, last.Cursor.Page)
	require.Equal(t, 3, w.gate.count())
}

// Start refuses what cannot run, and a sync id twice.
func TestStartRefuses(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{})
	ctx := context.Background()
	for _, tc := range []struct {
		s    jobs.Sync
		code string
	}{
		{jobs.Sync{Credential: credID}, syncs.CodeInvalid},
		{jobs.Sync{Credential: credID, Resource: "Patient", Mode: "sometimes"}, syncs.CodeInvalid},
		{jobs.Sync{Credential: "nobody", Resource: "Patient"}, syncs.CodeUnknownCredential},
		{jobs.Sync{Credential: credID, Resource: "Patient?x=1"}, syncs.CodeInvalid},
		{jobs.Sync{Credential: credID, Resource: "../admin"}, syncs.CodeInvalid},
		{jobs.Sync{ID: "bad id", Credential: credID, Resource: "Patient"}, syncs.CodeInvalid},
		{jobs.Sync{Credential: credID, Vendor: "other", Resource: "Patient"}, syncs.CodeInvalid},
	} {
		_, err := w.runner.Start(ctx, tc.s)
		var se *syncs.Error
		require.ErrorAs(t, err, &se, fmt.Sprint(tc.s))
		require.Equal(t, tc.code, se.Code, "%+v: %s", tc.s, se.Message)
	}
	s := jobs.NewSync(credID, "Patient", "")
	s.ID = "once"
	_, err := w.runner.Start(ctx, s)
	require.NoError(t, err)
	_, err = w.runner.Start(ctx, s)
	var se *syncs.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, syncs.CodeDuplicate, se.Code)
	_, err = w.runner.Status(ctx, vendorName, credID, "../admin")
	require.ErrorIs(t, err, syncs.ErrNotFound)
}

// fakeObjects is an object store in memory.
type fakeObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func (f *fakeObjects) PutBytes(_ context.Context, name string, data []byte) (*jetstream.ObjectInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[name] = append([]byte(nil), data...)
	return &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: name}, Digest: "SHA-256=x"}, nil
}

func (f *fakeObjects) get(name string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.objs[name]
}

// A page above the inline limit goes to the object store and its event
// refers to it; the metrics count pages, resources and how syncs end.
func TestLargePagesGoToTheObjectStore(t *testing.T) {
	t.Parallel()
	objects := &fakeObjects{objs: map[string][]byte{}}
	m := syncs.NewMetrics()
	w := setup(t, syncs.Deps{InlineLimit: 200, Objects: objects, Bucket: "B", Metrics: m})
	w.sb.SetFHIRResources(30)
	w.worker()
	w.start("large", jobs.SyncFull, "20")
	evs := w.waitEnd("large", 20*time.Second)
	require.Equal(t, events.TypeSyncCompleted, evs[len(evs)-1].Type)
	require.Len(t, evs, 3)
	seen := 0
	for _, e := range evs[:2] {
		require.Empty(t, e.Resources)
		require.NotNil(t, e.BodyRef)
		require.Equal(t, "B", e.BodyRef.Bucket)
		require.Equal(t, vendorName+"/"+credID+"/sync/large/"+strconv.Itoa(e.Page), e.BodyRef.Name)
		var rs []resource
		require.NoError(t, json.Unmarshal(objects.get(e.BodyRef.Name), &rs))
		seen += len(rs)
	}
	require.Equal(t, 30, seen)
	require.Equal(t, 2.0, testutil.ToFloat64(m.Pages.WithLabelValues(vendorName)))
	require.Equal(t, 30.0, testutil.ToFloat64(m.Resources.WithLabelValues(vendorName)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Ended.WithLabelValues(vendorName, syncs.StateCompleted)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Started.WithLabelValues(vendorName, jobs.SyncFull)))
}

// A non-FHIR API pages with an RFC 8288 Link header; the mark comes from
// its Date header.
func TestLinkHeaderPaging(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{})
	served := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	w.gate.serve = func(rw http.ResponseWriter, r *http.Request) {
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		items := []map[string]string{}
		for i := after + 1; i <= min(after+10, 25); i++ {
			items = append(items, map[string]string{"id": "rec_" + strconv.Itoa(i)})
		}
		if after+10 < 25 {
			rw.Header().Set("Link", `<`+w.vendors[vendorName].BaseURL+`Patient?limit=10&after=`+strconv.Itoa(after+10)+`>; rel="next", <x>; rel="first"`)
		}
		rw.Header().Set("Date", served.Format(http.TimeFormat))
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(map[string]any{"data": items, "has_more": after+10 < 25})
	}
	w.worker()
	w.start("records", jobs.SyncFull, "10")
	evs := w.waitEnd("records", 20*time.Second)
	last := evs[len(evs)-1]
	require.Equal(t, events.TypeSyncCompleted, last.Type, last.Message)
	require.Equal(t, 3, last.Pages)
	require.True(t, last.Mark.Equal(served), "the mark is the vendor's Date: %s", last.Mark)
	got, _ := delivered(t, evs)
	require.Len(t, got, 25)
}

// tokenrelay_syncs_running counts each vendor's syncs from their start to
// their end, however they end (completed, cancelled, failed), whichever
// process reads it.
func TestRunningSyncsGauge(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{MaxPages: 2})
	w.sb.SetFHIRResources(100)
	gauge := metrics.NewSyncs(w.runner)
	expect := func(n int) {
		t.Helper()
		want := fmt.Sprintf(`
# HELP tokenrelay_syncs_running Syncs running now (started, not yet completed, failed or cancelled), by vendor.
# TYPE tokenrelay_syncs_running gauge
tokenrelay_syncs_running{vendor=%q} %d
`, vendorName, n)
		require.NoError(t, testutil.CollectAndCompare(gauge, strings.NewReader(want)))
	}
	expect(0)
	hold, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.gate.set(func(_ int, r *http.Request) bool {
		if r.URL.Query().Get("_count") == "10" { // held's first page waits
			once.Do(func() { close(hold); <-release })
		}
		return true
	})
	w.start("held", jobs.SyncFull, "10")
	w.start("capped", jobs.SyncFull, "50")
	w.start("whole", jobs.SyncFull, "100")
	expect(3)
	w.worker()
	<-hold
	w.waitEnd("whole", 20*time.Second)
	w.waitEnd("capped", 20*time.Second) // two pages of 50 are the cap
	expect(1)
	_, err := w.runner.Cancel(context.Background(), vendorName, credID, "held")
	require.NoError(t, err)
	close(release)
	w.waitEnd("held", 20*time.Second)
	expect(0)
}
