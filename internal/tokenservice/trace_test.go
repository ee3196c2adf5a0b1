package tokenservice_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/tracing/tracingtest"
)

// A consumer's token.get (through package client) continues the caller's
// trace: the service's span is the caller's child, the reply's headers
// name the service's span, and no token is in a span.
func TestTokenGetContinuesTheCallersTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	start(t, nc, prefix, func(context.Context, string) (store.Credential, error) { return active(), nil }, tokenservice.Options{})
	ts, err := client.NewTokenSource(nc, vendor, credential, client.WithSubjectPrefix(prefix), client.WithClock(clock))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ts.Close() })

	ctx, caller := tracing.Tracer().Start(context.Background(), "caller")
	tok, err := ts.TokenContext(ctx)
	caller.End()
	require.NoError(t, err)
	require.Equal(t, "tok-7", tok.AccessToken)

	served := func() []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == "token.get" {
				out = append(out, s)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(served()) == 1 }, wait, tick)
	callerSC := trace.SpanContextFromContext(ctx)
	server := served()[0]
	require.Equal(t, callerSC.TraceID(), server.SpanContext().TraceID(), "the service's span is in the caller's trace")
	require.Equal(t, callerSC.SpanID(), server.Parent().SpanID(), "the service's span is the caller's child")
	require.Equal(t, trace.SpanKindServer, server.SpanKind())

	// The reply names the service's span.
	msg := nats.NewMsg(client.TokenSubject(prefix, vendor, credential))
	tracing.InjectNATS(ctx, msg)
	reply, err := nc.RequestMsg(msg, wait)
	require.NoError(t, err)
	replySC := trace.SpanContextFromContext(tracing.ExtractNATS(context.Background(), reply))
	require.Equal(t, callerSC.TraceID(), replySC.TraceID(), "the reply carries the trace: %v", reply.Header)
	require.Eventually(t, func() bool { return len(served()) == 2 }, wait, tick)
	require.Equal(t, served()[1].SpanContext().SpanID(), replySC.SpanID())

	tracingtest.RequireNothingOf(t, rec, "tok-7", "refresh-7")
}
