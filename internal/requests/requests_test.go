package requests_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// Submit → feeder → worker → budget → sandbox Halaxy → outbox event.
func TestRequestsCompleteWithEvents(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	w.worker(4)
	w.worker(4)
	w.feeder()

	ids := w.submit("clinic-1", "sync-1", 30)
	got := w.waitOutcomes(len(ids), 30*time.Second)
	requireEachCompletedOnce(t, ids, got)
	for _, o := range got {
		require.Equal(t, "request.completed."+vendorName+".clinic-1", o.Subject)
		require.Equal(t, http.StatusOK, o.Status)
		require.Equal(t, "sync-1", o.Batch)
		var data events.RequestCompleted
		require.NoError(t, json.Unmarshal(o.Raw, &data))
		require.Equal(t, "json", data.BodyEncoding)
		require.Contains(t, data.Headers["Content-Type"], "application/fhir+json")
		var bundle struct{ ResourceType string }
		raw, _ := json.Marshal(data.Body)
		require.NoError(t, json.Unmarshal(raw, &bundle))
		require.Equal(t, "Bundle", bundle.ResourceType)
		require.NotContains(t, string(o.Raw), "access_token")
	}
	for _, h := range w.rec.snapshot() {
		require.Equal(t, userAgent, h.ua)
	}
	st, err := w.batches.Status(context.Background(), vendorName, "clinic-1", "sync-1")
	require.NoError(t, err)
	require.Equal(t, int64(30), st.Total)
	require.Equal(t, int64(30), st.Done, fmtCounts(st))
	// Each count on its own: the requests of a group move their batch's
	// counts together (start.lua, transition.lua), and a wrong sum there
	// can leave queued and running off by as much as each other.
	require.Zero(t, st.Queued, fmtCounts(st))
	require.Zero(t, st.Waiting, fmtCounts(st))
	require.Zero(t, st.Running, fmtCounts(st))
	require.True(t, st.Finished())
}

func TestBadSubmissionIsRefusedAndNothingQueued(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	ctx := context.Background()
	big := strings.Repeat("x", requests.DefaultMaxBody+1)
	cases := []struct {
		name, json, code, says string
	}{
		{"unknown credential", `{"credential":"nobody","method":"GET","path":"Patient"}`, requests.CodeUnknownCredential, `no credential "nobody"`},
		{"missing method", `{"credential":"clinic-1","path":"Patient"}`, requests.CodeInvalid, "method is required"},
		{"bad method", `{"credential":"clinic-1","method":"FETCH","path":"Patient"}`, requests.CodeInvalid, "not one of"},
		{"body over the limit", `{"credential":"clinic-1","method":"POST","path":"Patient","body":"` +
			base64.StdEncoding.EncodeToString([]byte(big)) + `"}`, requests.CodeInvalid, "over the limit"},
		{"absolute path", `{"credential":"clinic-1","method":"GET","path":"https://evil.example/x"}`, requests.CodeInvalid, "relative"},
		{"rooted path", `{"credential":"clinic-1","method":"GET","path":"/Patient"}`, requests.CodeInvalid, "relative"},
		{"dot dot", `{"credential":"clinic-1","method":"GET","path":"a/../../oauth/token"}`, requests.CodeInvalid, ".."},
		{"deadline passed", `{"credential":"clinic-1","method":"GET","path":"Patient","deadline":"2020-01-01T00:00:00Z"}`, requests.CodeInvalid, "deadline"},
		{"authorization header", `{"credential":"clinic-1","method":"GET","path":"Patient","headers":{"Authorization":"Bearer x"}}`, requests.CodeInvalid, "set by tokenrelay"},
		{"wrong vendor", `{"vendor":"other","credential":"clinic-1","method":"GET","path":"Patient"}`, requests.CodeInvalid, "belongs to vendor"},
		{"unknown field", `{"credential":"clinic-1","method":"GET","path":"Patient","idempotencykey":"k"}`, requests.CodeInvalid, "idempotencykey"},
		{"bad batch", `{"credential":"clinic-1","method":"GET","path":"Patient","batch":"a b"}`, requests.CodeInvalid, "batch"},
		{"not json", `GET /Patient`, requests.CodeInvalid, "JSON object"},
	}
	for _, c := range cases {
		ans := requests.SubmitJSON(ctx, w.sub, []byte(c.json), w.log)
		refused, ok := ans.(requests.Refused)
		require.True(t, ok, "%s: accepted: %+v", c.name, ans)
		require.Equal(t, c.code, refused.Error, c.name)
		require.Contains(t, refused.Message, c.says, c.name)
	}
	keys, err := w.rdb.Keys(ctx, prefix+"req:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "a refused submission left something queued")

	ans := requests.SubmitJSON(ctx, w.sub, []byte(`{"id":"r-1","credential":"clinic-1","method":"get","path":"Patient","query":{"_count":"5","name":["a","b"]}}`), w.log)
	require.Equal(t, requests.Accepted{ID: "r-1", Accepted: true}, ans)
	again := requests.SubmitJSON(ctx, w.sub, []byte(`{"id":"r-1","credential":"clinic-1","method":"GET","path":"Patient"}`), w.log)
	require.Equal(t, requests.CodeDuplicate, again.(requests.Refused).Error)
}

// A 5xx is retried with backoff; a 404 fails at once quoting the vendor; a
// request whose deadline passes before it runs fails with class deadline
// and is never sent.
func TestFailures(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	w.addCredential("clinic-2")
	fault := sandboxServerError(2)
	fault.ClientID = "client-clinic-2"
	require.NoError(t, w.sb.Inject(fault))
	late := jobs.NewRequest("clinic-1", http.MethodGet, "Patient")
	late.Deadline = time.Now().Add(100 * time.Millisecond)
	late, err := w.sub.Submit(context.Background(), late)
	require.NoError(t, err)
	for time.Now().Before(late.Deadline) { // no worker runs it before its deadline
		time.Sleep(10 * time.Millisecond)
	}
	w.worker(4)
	w.feeder()
	ok := w.submit("clinic-2", "", 1)
	missing, err := w.sub.Submit(context.Background(), jobs.NewRequest("clinic-1", http.MethodGet, "Nothing/here"))
	require.NoError(t, err)
	got := w.waitOutcomes(3, 60*time.Second)
	byID := map[string]outcome{}
	for _, o := range got {
		byID[o.ID] = o
	}
	require.Equal(t, events.TypeRequestFailed, byID[missing.ID].Type)
	require.Equal(t, "rejected", byID[missing.ID].Class)
	require.Contains(t, byID[missing.ID].Message, "404")
	require.Equal(t, events.TypeRequestCompleted, byID[ok[0]].Type)
	require.Equal(t, 3, byID[ok[0]].Attempt, "two 500s, then success")
	require.Equal(t, events.TypeRequestFailed, byID[late.ID].Type)
	require.Equal(t, "deadline", byID[late.ID].Class)
	require.Len(t, w.rec.snapshot(), 3, "Patient was asked three times (two 500s, then 200); the late request was never sent")
	count := func(outcome string) float64 {
		return testutil.ToFloat64(w.metrics.Requests.WithLabelValues(vendorName, outcome))
	}
	require.Equal(t, 1.0, count(requests.OutcomeCompleted))
	require.Equal(t, 2.0, count(requests.OutcomeFailed))
	require.Equal(t, 2.0, count(requests.OutcomeRetried))
	require.Equal(t, 1, testutil.CollectAndCount(w.metrics.Duration), "one duration series per vendor")
	retried := byID[ok[0]]
	require.Equal(t, "request.completed."+vendorName+".clinic-2", retried.Subject)
}

// The submitter remembers a credential's vendor, so that a submission is
// one step in Redis; that step still checks the credential each time: one
// revoked, deleted or named with another vendor since is refused, and
// nothing is queued for it.
func TestSubmissionChecksTheCredentialEveryTime(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	w.addCredential("clinic-2")
	ctx := context.Background()
	for _, id := range []string{"clinic-1", "clinic-2"} {
		_, err := w.sub.Submit(ctx, jobs.NewRequest(id, http.MethodGet, "Patient")) // vendor remembered
		require.NoError(t, err)
	}
	queued := func() int64 {
		keys, err := w.rdb.Keys(ctx, prefix+"req:r:*").Result()
		require.NoError(t, err)
		return int64(len(keys))
	}
	before := queued()

	ev, err := events.New(events.TypeKeyRevoked, vendorName, "clinic-1", time.Now(), events.KeyRevoked{Reason: events.ReasonRevokedByVendor})
	require.NoError(t, err)
	require.NoError(t, w.store.Revoke(ctx, "clinic-1", 1, "revoked_by_operator", "test", ev))
	_, err = w.sub.Submit(ctx, jobs.NewRequest("clinic-1", http.MethodGet, "Patient"))
	var se *requests.SubmitError
	require.ErrorAs(t, err, &se)
	require.Equal(t, requests.CodeUnknownCredential, se.Code)
	require.Contains(t, se.Message, "revoked")

	wrong := jobs.NewRequest("clinic-2", http.MethodGet, "Patient")
	wrong.Vendor = "other"
	_, err = w.sub.Submit(ctx, wrong)
	require.ErrorAs(t, err, &se)
	require.Equal(t, requests.CodeInvalid, se.Code)
	require.Contains(t, se.Message, "belongs to vendor")

	require.NoError(t, w.rdb.Del(ctx, w.store.CredentialKey("clinic-2")).Err())
	_, err = w.sub.Submit(ctx, jobs.NewRequest("clinic-2", http.MethodGet, "Patient"))
	require.ErrorAs(t, err, &se)
	require.Equal(t, requests.CodeUnknownCredential, se.Code)
	require.Contains(t, se.Message, `no credential "clinic-2"`)

	require.Equal(t, before, queued(), "a refused submission queued something")
}
