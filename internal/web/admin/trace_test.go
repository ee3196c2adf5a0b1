package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/tracing/tracingtest"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
)

// ctxSyncs is a SyncJobs whose Start reports the context it was given.
type ctxSyncs struct {
	start func(context.Context, jobs.Sync)
}

func (f ctxSyncs) Start(ctx context.Context, s jobs.Sync) (jobs.Sync, error) {
	f.start(ctx, s)
	s.ID = "sync-1"
	return s, nil
}
func (ctxSyncs) Status(context.Context, string, string, string) (adminclient.SyncStatus, error) {
	return adminclient.SyncStatus{}, nil
}
func (ctxSyncs) Cancel(context.Context, string, string, string) (adminclient.SyncStatus, error) {
	return adminclient.SyncStatus{}, nil
}
func (ctxSyncs) Decode(body []byte) (jobs.Sync, error) {
	if !strings.Contains(string(body), "Patient") {
		return jobs.Sync{}, errors.New("not a sync")
	}
	return jobs.Sync{Vendor: "v1", Credential: "clinic-1"}, nil
}

// ctxRequests is a RequestJobs whose Submit reports the context it was given.
type ctxRequests struct {
	fakeRequestJobs
	submit func(context.Context, jobs.Request)
}

func (f ctxRequests) Submit(ctx context.Context, r jobs.Request) (jobs.Request, error) {
	f.submit(ctx, r)
	r.ID = "req-1"
	return r, nil
}

// A request job or a sync submitted over HTTP starts its trace at the
// admin API: a server span named by the route, the root of a new trace or
// the child of the caller's, whose context the submission runs in (so
// requests.submit and the job are its children) and the response names.
// The span holds the method, route and status only: not the bearer token,
// the query or the body.
func TestSubmissionsOverHTTPAreServerSpans(t *testing.T) {
	rec := tracingtest.Record(t)
	var got trace.SpanContext
	saw := func(ctx context.Context) { got = trace.SpanContextFromContext(ctx) }
	h := Handler(Deps{
		Config: &config.Config{}, Token: secret.New(adminToken), Logger: zerolog.Nop(),
		Requests: ctxRequests{submit: func(ctx context.Context, _ jobs.Request) { saw(ctx) }},
		Syncs:    ctxSyncs{start: func(ctx context.Context, _ jobs.Sync) { saw(ctx) }},
	})
	const bodyMarker = "Patient?name=SECRET-PATIENT"
	bodies := map[string]string{
		"/admin/requests": `{"vendor":"v1","credential":"clinic-1","method":"GET","path":"/` + bodyMarker + `"}`,
		"/admin/syncs":    `{"vendor":"v1","credential":"clinic-1","resource":"` + bodyMarker + `"}`,
	}
	for _, path := range []string{"/admin/requests", "/admin/syncs"} {
		for _, caller := range []bool{false, true} {
			got = trace.SpanContext{}
			req := httptest.NewRequest(http.MethodPost, path+"?note=QUERY-MARKER", strings.NewReader(bodies[path]))
			req.Header.Set("Authorization", "Bearer "+adminToken)
			var callerSC trace.SpanContext
			if caller {
				ctx, span := tracing.Tracer().Start(context.Background(), "caller")
				span.End()
				callerSC = trace.SpanContextFromContext(ctx)
				req.Header.Set("traceparent", tracing.Inject(ctx).TraceParent)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			require.Equal(t, http.StatusAccepted, w.Code, "%s: %s", path, w.Body)

			spans := rec.Ended()
			server := spans[len(spans)-1]
			require.Equal(t, "POST "+path, server.Name())
			require.Equal(t, trace.SpanKindServer, server.SpanKind())
			require.Equal(t, server.SpanContext(), got, "%s runs in the server span's context", path)
			if caller {
				require.Equal(t, callerSC.TraceID(), server.SpanContext().TraceID(), "the caller's trace goes on")
				require.Equal(t, callerSC.SpanID(), server.Parent().SpanID())
			} else {
				require.False(t, server.Parent().IsValid(), "a new trace starts at the admin API")
			}
			resp := tracing.Carrier{TraceParent: w.Header().Get("traceparent")}.SpanContext()
			require.Equal(t, server.SpanContext().SpanID(), resp.SpanID(), "the response names the server span")
		}
	}
	tracingtest.RequireNothingOf(t, rec, adminToken, "QUERY-MARKER", "SECRET-PATIENT")
}
