package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/tracing/tracingtest"
)

// recorder installs an in-memory provider and the propagator for one test.
var recorder = tracingtest.Record

func TestEnabledOnlyWhenAnExporterIsNamed(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	require.False(t, tracing.Enabled(env()))
	require.True(t, tracing.Enabled(env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")))
	require.True(t, tracing.Enabled(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")))
	require.True(t, tracing.Enabled(env("OTEL_TRACES_EXPORTER", "otlp")))
	require.False(t, tracing.Enabled(env("OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://x")))
	require.False(t, tracing.Enabled(env("OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://x")))

	_, err := tracing.Setup(context.Background(), "test", env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"))
	require.ErrorContains(t, err, "OTEL_EXPORTER_OTLP_PROTOCOL")
}

// A span started from a payload's carrier (an asynq task, an outbox
// entry) is a child of the span that wrote it, across a JSON round trip.
func TestCarrierSurvivesAPayload(t *testing.T) {
	rec := recorder(t)
	ctx, parent := tracing.Tracer().Start(context.Background(), "enqueue")
	raw, err := json.Marshal(struct {
		Trace tracing.Carrier `json:"trace,omitzero"`
	}{tracing.Inject(ctx)})
	require.NoError(t, err)
	parent.End()

	var got struct {
		Trace tracing.Carrier `json:"trace,omitzero"`
	}
	require.NoError(t, json.Unmarshal(raw, &got))
	_, child := tracing.Tracer().Start(got.Trace.Extract(context.Background()), "run")
	child.End()

	spans := rec.Ended()
	require.Len(t, spans, 2)
	require.Equal(t, spans[0].SpanContext().TraceID(), spans[1].SpanContext().TraceID())
	require.Equal(t, spans[0].SpanContext().SpanID(), spans[1].Parent().SpanID())

	// No span, no carrier: payloads stay as they were.
	require.True(t, tracing.Inject(context.Background()).IsZero())
	raw, err = json.Marshal(struct {
		Trace tracing.Carrier `json:"trace,omitzero"`
	}{tracing.Inject(context.Background())})
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(raw))
}

func TestNATSHeadersCarryTheSpan(t *testing.T) {
	rec := recorder(t)
	ctx, parent := tracing.Tracer().Start(context.Background(), "publish")
	msg := nats.NewMsg("token.renewed.v.c")
	tracing.InjectNATS(ctx, msg)
	parent.End()
	require.NotEmpty(t, msg.Header.Get("traceparent"))

	_, child := tracing.Tracer().Start(tracing.ExtractNATS(context.Background(), msg), "receive")
	child.End()
	spans := rec.Ended()
	require.Equal(t, spans[0].SpanContext().SpanID(), spans[1].Parent().SpanID())
}

func TestLogLinesNameTheSpan(t *testing.T) {
	recorder(t)
	var buf bytes.Buffer
	log := zerolog.New(&buf).Hook(tracing.LogHook{})
	ctx, span := tracing.Tracer().Start(context.Background(), "work")
	defer span.End()

	inner := tracing.Logger(ctx, log)
	inner.Info().Msg("inside")
	log.Info().Msg("outside")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	var inside, outside map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &inside))
	require.NoError(t, json.Unmarshal(lines[1], &outside))
	sc := trace.SpanContextFromContext(ctx)
	require.Equal(t, sc.TraceID().String(), inside["trace_id"])
	require.Equal(t, sc.SpanID().String(), inside["span_id"])
	require.NotContains(t, outside, "trace_id")
}

// TestTransportTracesSampledRequestsOnly: a vendor request inside a sampled
// span is a client span; inside a span the sampler dropped (99 renewals in
// 100 at 1 %) it is the request alone and leaves no span. (That the dropped
// case also starts no span, which the SDK would drop, is a saving measured
// by bench/pipeline -trace 1, not visible here.)
func TestTransportTracesSampledRequestsOnly(t *testing.T) {
	rec := recorder(t)
	vendor := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer vendor.Close()
	client := &http.Client{Transport: tracing.Transport(nil)}
	get := func(ctx context.Context) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, vendor.URL+"/token", nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}

	ctx, parent := tracing.Tracer().Start(context.Background(), "vendor.token")
	get(ctx)
	parent.End()
	require.Len(t, rec.Ended(), 2)
	require.Equal(t, "HTTP GET", rec.Ended()[0].Name())

	dropped := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	get(trace.ContextWithSpanContext(context.Background(), dropped))
	require.Len(t, rec.Ended(), 2, "a request under an unsampled span starts no span")
}

// A task queued before the carrier became a struct (a JSON object of the
// W3C header names) is read as before.
func TestCarrierReadsTheMapForm(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	var got struct {
		Trace tracing.Carrier `json:"trace,omitzero"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"trace":{"traceparent":"`+tp+`","tracestate":"a=b","baggage":"k=v"}}`), &got))
	require.Equal(t, tracing.Carrier{TraceParent: tp, TraceState: "a=b"}, got.Trace)
	sc := got.Trace.SpanContext()
	require.True(t, sc.IsSampled())
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", sc.TraceID().String())
	require.Equal(t, "a=b", sc.TraceState().String())
}

// Under a span the sampler dropped, tracing.Start starts no span (its
// child would be dropped too) and the trace context is the dropped span's:
// the same trace travels on, unsampled. Under a sampled span, or none, it
// starts one.
func TestStartUnderADroppedSpanStartsNone(t *testing.T) {
	rec := recorder(t)
	dropped := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), dropped)
	cctx, span := tracing.Start(ctx, "child")
	require.False(t, span.IsRecording())
	require.Equal(t, dropped, trace.SpanContextFromContext(cctx))
	span.End()
	require.Empty(t, rec.Ended())
	require.Equal(t, dropped.TraceID().String(), strings.Split(tracing.Inject(cctx).TraceParent, "-")[1])

	pctx, parent := tracing.Tracer().Start(context.Background(), "parent")
	_, child := tracing.Start(pctx, "child")
	require.True(t, child.IsRecording())
	child.End()
	parent.End()
	require.Len(t, rec.Ended(), 2)
	require.Equal(t, rec.Ended()[1].SpanContext().SpanID(), rec.Ended()[0].Parent().SpanID())
}
