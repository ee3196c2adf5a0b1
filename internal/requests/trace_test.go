package requests_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/tracing/tracingtest"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// A request job is one trace under its submitter's span: the submission,
// the feeder's release, each run of its task (the asynq retry after a 503
// too) a child of the submission, the budget take and the vendor call
// children of a run, and the outcome event carries the last run's context.
// No token, secret or patient data (path, query, body) is in any span.
func TestRequestJobIsOneTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	const phi = "PHI-Jane-Doe-1970"
	var calls atomic.Int32
	w.rec.api = map[string]http.HandlerFunc{"/Patient/" + phi: func(rw http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(rw, `{"resourceType":"Patient","name":%q}`, phi)
	}}
	w.worker(2)
	w.feeder()

	ctx, caller := tracing.Tracer().Start(context.Background(), "caller")
	r, err := jobs.NewRequest("clinic-1", http.MethodPost, "Patient/"+phi).WithJSONBody(map[string]string{"name": phi})
	require.NoError(t, err)
	r.Query = jobs.Query{"name": {phi}}
	_, err = w.sub.Submit(ctx, r)
	require.NoError(t, err)
	caller.End()
	traceID := trace.SpanContextFromContext(ctx).TraceID()

	got := w.waitOutcomes(1, 30*time.Second)
	require.Equal(t, events.TypeRequestCompleted, got[0].Type, got[0].Message)
	require.Equal(t, 2, got[0].Attempt, "a 503, then the retry")

	spans := tracingtest.InTrace(rec, traceID)
	parentOf := func(s interface{ Parent() trace.SpanContext }) string {
		for name, list := range spans {
			for _, p := range list {
				if p.SpanContext().SpanID() == s.Parent().SpanID() {
					return name
				}
			}
		}
		return ""
	}
	require.Len(t, spans["requests.submit"], 1)
	require.Equal(t, "caller", parentOf(spans["requests.submit"][0]))
	submitID := spans["requests.submit"][0].SpanContext().SpanID()
	require.NotEmpty(t, spans["requests.release"], "the feeder's release is in the trace")
	for _, s := range spans["requests.release"] {
		require.Equal(t, submitID, s.Parent().SpanID())
	}
	require.Len(t, spans["jobs.request"], 2, "both runs (the asynq retry too) are in the submission's trace")
	runs := map[trace.SpanID]bool{}
	for _, s := range spans["jobs.request"] {
		require.Equal(t, submitID, s.Parent().SpanID(), "a run is the submission's child, never an earlier run's")
		runs[s.SpanContext().SpanID()] = true
	}
	require.Len(t, spans["requests.budget"], 2)
	for _, s := range spans["requests.budget"] {
		require.True(t, runs[s.Parent().SpanID()], "the budget take is a run's child")
	}
	require.Len(t, spans["HTTP POST"], 2, "the vendor calls: %v", spans)
	for _, s := range spans["HTTP POST"] {
		require.True(t, runs[s.Parent().SpanID()], "the vendor call is a run's child")
	}

	// The event names the trace, so the relay publishes it under it.
	last := spans["jobs.request"][1].SpanContext()
	require.Equal(t, "00-"+traceID.String()+"-"+last.SpanID().String()+"-01", got[0].TraceParent,
		"request.completed carries the trace of the run that completed it")

	cred, err := w.store.CurrentToken(context.Background(), "clinic-1")
	require.NoError(t, err)
	tracingtest.RequireNothingOf(t, rec, phi, cred.Token.AccessToken.Reveal(), "secret-clinic-1", "Patient/")
}

// A submission on NATS continues its submitter's trace: request.submit's
// server span is the caller's child, the submission its child, and the
// reply's headers name the server span.
func TestSubmitOnNATSContinuesTheCallersTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	nc, _, _ := testenv.NATS(t)
	subjects := testenv.Unique("t") + "."
	svc, err := requests.NewService(nc, w.sub, requests.ServiceOptions{SubjectPrefix: subjects})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })

	ctx, caller := tracing.Tracer().Start(context.Background(), "caller")
	msg := nats.NewMsg(subjects + requests.SubjectSubmit)
	msg.Data = []byte(`{"id":"traced-1","credential":"clinic-1","method":"GET","path":"Patient/PHI-x"}`)
	tracing.InjectNATS(ctx, msg)
	reply, err := nc.RequestMsg(msg, 5*time.Second)
	require.NoError(t, err)
	caller.End()
	require.Contains(t, string(reply.Data), `"accepted":true`)

	traceID := trace.SpanContextFromContext(ctx).TraceID()
	var spans map[string][]sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		spans = tracingtest.InTrace(rec, traceID)
		return len(spans[requests.SubjectSubmit]) == 1
	}, 5*time.Second, 5*time.Millisecond)
	server := spans[requests.SubjectSubmit][0]
	require.Equal(t, trace.SpanContextFromContext(ctx).SpanID(), server.Parent().SpanID())
	require.Len(t, spans["requests.submit"], 1)
	require.Equal(t, server.SpanContext().SpanID(), spans["requests.submit"][0].Parent().SpanID())
	replySC := trace.SpanContextFromContext(tracing.ExtractNATS(context.Background(), reply))
	require.Equal(t, server.SpanContext().SpanID(), replySC.SpanID(), "the reply names the server span: %v", reply.Header)
	// A refusal's span says why by its code, not by its message (which
	// quotes the path).
	_, err = w.sub.Submit(ctx, jobs.NewRequest("clinic-1", http.MethodGet, "/Patient/PHI-x"))
	require.ErrorContains(t, err, "PHI-x")
	tracingtest.RequireNothingOf(t, rec, "PHI-x")
}
