package events_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// An event written to the outbox while NATS is down keeps the trace of the
// work that produced it: when NATS is back, the relay publishes it with
// that trace in its headers, under a publish span that is the producing
// span's child. (Not parallel: it installs the process's tracer provider.)
func TestRelayKeepsTheTraceAcrossANATSOutage(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	_, err := tracing.Setup(context.Background(), "test", func(string) string { return "" })
	require.NoError(t, err)

	ctx := t.Context()
	port, storeDir := freePort(t), t.TempDir()
	b := &bundle{subjectPrefix: "", streamName: events.DefaultStreamName}
	b.rdb, b.prefix = testenv.RedisPrefix(t)
	b.outbox = events.NewOutbox(b.rdb, b.prefix)

	// The renewal's commit, traced, lands in the outbox before NATS is up.
	commitCtx, commit := tracing.Tracer().Start(ctx, "store.commit")
	env := renewal(t, "halaxy-au", "clinic-1", 1).Traced(commitCtx)
	commit.End()
	require.NotEmpty(t, env.TraceParent)
	require.NoError(t, b.outbox.Append(ctx, env))

	srv, err := testenv.RunNATS(port, storeDir)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	js := newJetStream(t, "nats://127.0.0.1:"+strconv.Itoa(port))
	stream, err := events.EnsureStream(ctx, js, events.StreamConfig{})
	require.NoError(t, err)
	startRelay(t, events.RelayOptions{
		Redis: b.rdb, Prefix: b.prefix, JetStream: js, Logger: testLogger(t),
		LeaseTTL: time.Second, Block: 100 * time.Millisecond, AckTimeout: time.Second,
	})

	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	require.NoError(t, err)
	traceID := trace.SpanContextFromContext(commitCtx).TraceID().String()
	require.True(t, strings.HasPrefix(msg.Headers().Get("traceparent"), "00-"+traceID+"-"),
		"the published message should carry the renewal's trace, got %q", msg.Headers().Get("traceparent"))
	require.Contains(t, string(msg.Data()), `"traceparent":"`+env.TraceParent+`"`)

	var publish sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "events.publish" && s.SpanContext().TraceID().String() == traceID {
				publish = s
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the relay should end a publish span in the renewal's trace")
	require.Equal(t, trace.SpanContextFromContext(commitCtx).SpanID(), publish.Parent().SpanID())
	require.Equal(t, trace.SpanKindProducer, publish.SpanKind())
}
