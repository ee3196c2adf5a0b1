package requests_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// Attack: clinic B reuses clinic A's idempotency key. The key is A's: B's
// request is not a duplicate of A's, it is sent for B, and nothing of A's
// outcome (its id, its answer) is published on B's subject.
func TestIdempotencyKeyStaysWithItsCredential(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-a")
	w.addCredential("clinic-b")
	w.worker(2)
	w.feeder()
	ctx := context.Background()

	a := jobs.NewRequest("clinic-a", http.MethodGet, "Patient")
	a.IdempotencyKey, a.Headers = "nightly-2026-12-06", map[string]string{"X-Test-Credential": "clinic-a"}
	_, err := w.sub.Submit(ctx, a)
	require.NoError(t, err)
	require.Len(t, w.waitOutcomes(1, 30*time.Second), 1)

	b := jobs.NewRequest("clinic-b", http.MethodGet, "Patient")
	b.IdempotencyKey, b.Headers = a.IdempotencyKey, map[string]string{"X-Test-Credential": "clinic-b"}
	_, err = w.sub.Submit(ctx, b)
	require.NoError(t, err)
	got := w.waitOutcomes(2, 30*time.Second)
	for _, o := range got {
		if o.ID != b.ID {
			continue
		}
		require.Equal(t, "request.completed."+vendorName+".clinic-b", o.Subject)
		require.Empty(t, o.Dup, "B was answered with A's outcome")
		require.NotContains(t, string(o.Raw), a.ID, "B's event names A's request")
	}
	clients := map[string]int{}
	for _, h := range w.rec.snapshot() {
		clients[h.client]++
	}
	require.Equal(t, map[string]int{"clinic-a": 1, "clinic-b": 1}, clients, "each clinic's request reached the vendor once")
}

// Attack: clinic B asks for the status of clinic A's batch and cancels it.
// It is told there is no such batch (of its credential), sees none of A's
// counts, and A's requests all run; B's own batch of the same name is B's.
func TestBatchStaysWithItsCredential(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-a")
	w.addCredential("clinic-b")
	ctx := context.Background()
	aIDs := w.submit("clinic-a", "nightly", 5)

	_, err := w.batches.Status(ctx, vendorName, "clinic-b", "nightly")
	require.ErrorIs(t, err, requests.ErrBatchNotFound, "B sees A's batch")
	require.ErrorIs(t, w.batches.Cancel(ctx, vendorName, "clinic-b", "nightly"), requests.ErrBatchNotFound, "B cancels A's batch")
	_, err = w.batches.Status(ctx, "", "", "nightly")
	require.ErrorIs(t, err, requests.ErrBatchCredential)
	require.ErrorIs(t, w.batches.Cancel(ctx, "", "", "nightly"), requests.ErrBatchCredential)

	// B's own batch "nightly" is another batch: B counts and cancels only it.
	bIDs := w.submit("clinic-b", "nightly", 2)
	st, err := w.batches.Status(ctx, vendorName, "clinic-b", "nightly")
	require.NoError(t, err)
	require.Equal(t, int64(2), st.Total, "B's batch counts A's requests")
	require.NoError(t, w.batches.Cancel(ctx, vendorName, "clinic-b", "nightly"))
	st, err = w.batches.Status(ctx, vendorName, "clinic-a", "nightly")
	require.NoError(t, err)
	require.False(t, st.CancelRequested, "B's cancel reached A's batch")
	require.Equal(t, int64(5), st.Total)

	w.worker(2)
	w.feeder()
	got := w.waitOutcomes(len(aIDs)+len(bIDs), 30*time.Second)
	var aOut, bOut []outcome
	for _, o := range got {
		if strings.HasSuffix(o.Subject, ".clinic-a") {
			aOut = append(aOut, o)
		} else {
			bOut = append(bOut, o)
		}
	}
	requireEachCompletedOnce(t, aIDs, aOut)
	for _, o := range bOut {
		require.Equal(t, "cancelled", o.Class)
	}
	require.Eventually(t, func() bool {
		st, err := w.batches.Status(ctx, vendorName, "clinic-a", "nightly")
		return err == nil && st.Done == 5 && st.Cancelled == 0 && st.Finished()
	}, 10*time.Second, 20*time.Millisecond)
}

// Attack: clinic B submits a request with the id of clinic A's. It is
// refused without a word of A's request, which runs as A's, once, and is
// answered on A's subject only.
func TestRequestIDStaysWithItsCredential(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-a")
	w.addCredential("clinic-b")
	ctx := context.Background()
	a := jobs.NewRequest("clinic-a", http.MethodGet, "Patient")
	a.ID = "page-0001"
	_, err := w.sub.Submit(ctx, a)
	require.NoError(t, err)

	b := jobs.NewRequest("clinic-b", http.MethodPost, "Patient")
	b.ID = a.ID
	b.Body = json.RawMessage(`{"resourceType":"Patient"}`)
	_, err = w.sub.Submit(ctx, b)
	var se *requests.SubmitError
	require.ErrorAs(t, err, &se, "B took A's request id")
	require.Equal(t, requests.CodeDuplicate, se.Code)
	require.NotContains(t, se.Message, "clinic-a")
	// The same over NATS or the admin API (SubmitJSON): refused, nothing of A's.
	answer := requests.SubmitJSON(ctx, w.sub, []byte(`{"id":"page-0001","credential":"clinic-b","method":"GET","path":"Patient"}`), zerolog.Nop())
	refused, ok := answer.(requests.Refused)
	require.True(t, ok, "answer %#v", answer)
	require.Equal(t, requests.CodeDuplicate, refused.Error)
	require.NotContains(t, refused.Message, "clinic-a")

	w.worker(2)
	w.feeder()
	got := w.waitOutcomes(1, 30*time.Second)
	requireEachCompletedOnce(t, []string{a.ID}, got)
	require.Equal(t, "request.completed."+vendorName+".clinic-a", got[0].Subject)
	require.Never(t, func() bool { return len(w.outcomes()) > 1 }, 500*time.Millisecond, 50*time.Millisecond)
}

// Markers of patient data: in what a clinic sends, and in what the vendor
// answers.
const (
	phiSent     = "PHI-SENT-Jane-Roe-19620412"
	phiAnswered = "PHI-ANSWER-Hypertension-I10"
	phiRefused  = "PHI-REFUSED-Ward-7-Bed-3"
)

// Attack: someone with read access to Redis looks for patient data. A
// request's body, query and headers (queued, released as a task), the
// vendor's answer (in the outcome event waiting in the outbox, under the
// idempotency key, in a failed attempt's error kept by asynq) and its
// quoted refusal are all there while the requests run; none of it is
// readable, in clear or in base64.
func TestPatientDataIsSealedInRedis(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-a")
	var calls atomic.Int32
	w.rec.api = map[string]http.HandlerFunc{
		"/Observation": func(rw http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			rw.Header().Set("Content-Type", "application/fhir+json")
			if calls.Add(1) == 1 { // a failed attempt first: asynq keeps its error
				rw.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(rw, `{"issue":[{"diagnostics":"`+phiAnswered+` upstream failed"}]}`)
				return
			}
			rw.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(rw, `{"resourceType":"Observation","code":{"text":"`+phiAnswered+`"}}`)
		},
		"/Condition": func(rw http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			rw.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(rw, `{"issue":[{"diagnostics":"`+phiRefused+` is not valid"}]}`)
		},
	}
	ctx := context.Background()
	var ids []string
	for _, path := range []string{"Observation", "Condition"} {
		r := jobs.NewRequest("clinic-a", http.MethodPost, path)
		r.Batch, r.IdempotencyKey = "sync", "key-"+path
		r.Query = jobs.Query{"subject": {phiSent}}
		r.Headers = map[string]string{"X-Patient-Note": phiSent}
		r, err := r.WithJSONBody(map[string]string{"resourceType": path, "note": phiSent})
		require.NoError(t, err)
		_, err = w.sub.Submit(ctx, r)
		require.NoError(t, err)
		ids = append(ids, r.ID)
	}
	requireNoPHI(t, w, "queued")

	// Released as tasks, none run yet: the tasks' payloads.
	w.feeder()
	require.Eventually(t, func() bool {
		n, err := w.rdb.Exists(ctx, "asynq:{default}:t:"+jobs.RequestTaskID(ids[0])+":1").Result()
		return err == nil && n == 1
	}, 10*time.Second, 20*time.Millisecond)
	requireNoPHI(t, w, "released")

	w.worker(2)
	// The Observation's first attempt failed (502: retried by asynq with
	// its error kept in the task, or, sent in a group, handed to a task of
	// its own due after the backoff); the Condition was refused.
	require.Eventually(t, func() bool {
		retry, err := w.rdb.ZCard(ctx, "asynq:{default}:retry").Result()
		scheduled, err2 := w.rdb.ZCard(ctx, "asynq:{default}:scheduled").Result()
		return err == nil && err2 == nil && retry+scheduled == 1 && len(w.outcomes()) >= 1
	}, 30*time.Second, 10*time.Millisecond)
	requireNoPHI(t, w, "retrying")
	got := w.waitOutcomes(2, 30*time.Second)
	requireNoPHI(t, w, "ended")

	// The markers were there to find: the outcomes carry them, sealed.
	all := ""
	for _, o := range got {
		all += string(o.Raw)
	}
	require.Contains(t, all, phiAnswered)
	require.Contains(t, all, phiRefused)
}

// requireNoPHI reads every key of the test's Redis database (the store's
// prefix and asynq's) and fails if a marker is in any, in clear or in
// base64.
func requireNoPHI(t *testing.T, w *world, when string) {
	t.Helper()
	ctx := context.Background()
	var dump strings.Builder
	iter := w.rdb.Scan(ctx, 0, "*", 200).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		typ, err := w.rdb.Type(ctx, key).Result()
		require.NoError(t, err)
		dump.WriteString("\n" + key + ":")
		switch typ {
		case "string":
			v, _ := w.rdb.Get(ctx, key).Result()
			dump.WriteString(v)
		case "hash":
			m, _ := w.rdb.HGetAll(ctx, key).Result()
			for k, v := range m {
				dump.WriteString(k + "=" + v + " ")
			}
		case "list":
			l, _ := w.rdb.LRange(ctx, key, 0, -1).Result()
			dump.WriteString(strings.Join(l, " "))
		case "set":
			l, _ := w.rdb.SMembers(ctx, key).Result()
			dump.WriteString(strings.Join(l, " "))
		case "zset":
			l, _ := w.rdb.ZRange(ctx, key, 0, -1).Result()
			dump.WriteString(strings.Join(l, " "))
		case "stream":
			msgs, _ := w.rdb.XRange(ctx, key, "-", "+").Result()
			for _, m := range msgs {
				for k, v := range m.Values {
					dump.WriteString(k + "=" + v.(string) + " ")
				}
			}
		}
	}
	require.NoError(t, iter.Err())
	text := dump.String()
	for _, marker := range []string{phiSent, phiAnswered, phiRefused} {
		for _, form := range encodings(marker) {
			require.NotContains(t, text, form, "%s: patient data (%s) readable in Redis", when, marker)
		}
	}
}

// encodings are a marker in clear and the parts of its base64 (standard
// and URL alphabets) that do not depend on what surrounds it, at each of
// the three alignments.
func encodings(marker string) []string {
	out := []string{marker}
	for off := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, off), marker...))
		start, end := (off*8+5)/6, (off+len(marker))*8/6
		part := enc[start:end]
		out = append(out, part, strings.NewReplacer("+", "-", "/", "_").Replace(part))
	}
	return out
}
