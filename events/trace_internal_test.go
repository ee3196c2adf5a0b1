package events

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/tracing/tracingtest"
)

// The relay reads an event's trace context from the envelope's own
// members, never from a member of the same name inside its data, and
// reads the same thing a full decode does.
func TestEnvelopeTraceReadsTheEnvelopeOnly(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	env, err := New(TypeTokenRenewed, "halaxy", "c1", time.Unix(0, 0), map[string]any{
		"generation": 3, "traceparent": "00-11111111111111111111111111111111-2222222222222222-01",
		"nested": map[string]any{"tracestate": "x=y", "list": []any{`"traceparent":"a"`, 1}},
	})
	require.NoError(t, err)

	raw, err := MarshalEnvelope(env)
	require.NoError(t, err)
	require.Equal(t, tracing.Carrier{}, envelopeTrace(raw), "an untraced event whose data names a traceparent")

	env.TraceParent, env.TraceState = tp, "vendor=v1"
	raw, err = MarshalEnvelope(env)
	require.NoError(t, err)
	require.Equal(t, tracing.Carrier{TraceParent: tp, TraceState: "vendor=v1"}, envelopeTrace(raw))

	// Spelled another way (white space, other member order), as json.Valid lets through.
	var decoded Envelope
	require.NoError(t, json.Unmarshal(raw, &decoded))
	pretty, err := json.MarshalIndent(map[string]any{"traceparent": tp, "data": json.RawMessage(`{"traceparent":"no"}`), "id": "x"}, "", "  ")
	require.NoError(t, err)
	require.Equal(t, tracing.Carrier{TraceParent: tp}, envelopeTrace(pretty))
	require.Equal(t, decoded.Trace(), envelopeTrace(raw), "as a full decode reads it")

	for _, bad := range []string{`{"traceparent":"00-\u0030"}`, `{"traceparent":`, `{"traceparent":"unterminated`} {
		require.Equal(t, tracing.Carrier{}, envelopeTrace([]byte(bad)), bad)
	}
}

// An event of a renewal the sampler dropped still carries its trace in the
// NATS headers (W3C propagation: the flags say unsampled), and no publish
// span is made for it; a sampled one is published under a span of its own.
func TestUnsampledEventsCarryTheirTraceWithoutASpan(t *testing.T) {
	rec := tracingtest.Record(t)
	dropped := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xa}, SpanID: trace.SpanID{0xb}, Remote: true})
	tc := tracing.Inject(trace.ContextWithRemoteSpanContext(context.Background(), dropped))
	msg := newMsg("token.renewed.v.c", "id-1", []byte(`{}`))
	endSpan(tracePublish(context.Background(), msg, tc), nil)
	require.Equal(t, tc.TraceParent, msg.Header.Get("traceparent"))
	require.True(t, strings.HasSuffix(tc.TraceParent, "-00"))
	require.Empty(t, rec.Ended())

	ctx, producer := tracing.Tracer().Start(context.Background(), "store.commit")
	producer.End()
	msg = newMsg("token.renewed.v.c", "id-2", []byte(`{}`))
	endSpan(tracePublish(context.Background(), msg, tracing.Inject(ctx)), nil)
	require.Len(t, rec.Ended(), 2)
	publish := rec.Ended()[1]
	require.Equal(t, "events.publish", publish.Name())
	require.Equal(t, producer.SpanContext().SpanID(), publish.Parent().SpanID())
	require.Equal(t, tracing.Carrier{TraceParent: msg.Header.Get("traceparent")}.SpanContext().SpanID(), publish.SpanContext().SpanID())
}
