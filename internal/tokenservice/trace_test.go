package tokenservice_test

import (
	"context"
	"errors"
	"sync/atomic"
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
// trace: the service's span is the caller's child. What the consumer
// receives names the renewal that produced the token (kept with it by the
// store, store.Credential.RenewalTrace): the reply's traceparent header,
// and so client.RenewalLink of the token, is the renewal's span, from the
// store and from the cache during a store outage; the service's span
// links to it. No token is in a span.
func TestTokenGetNamesTheRenewalThatProducedTheToken(t *testing.T) {
	rec := tracingtest.Record(t)
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."

	// The renewal that committed the token (in the worker: store.commit).
	rctx, renewal := tracing.Tracer().Start(context.Background(), "store.commit")
	renewal.End()
	renewalSC := trace.SpanContextFromContext(rctx)
	cred := active()
	cred.RenewalTrace = tracing.Inject(rctx).TraceParent

	var down atomic.Bool
	start(t, nc, prefix, func(context.Context, string) (store.Credential, error) {
		if down.Load() {
			return store.Credential{}, errors.New("redis: connection refused")
		}
		return cred, nil
	}, tokenservice.Options{})
	ts, err := client.NewTokenSource(nc, vendor, credential, client.WithSubjectPrefix(prefix), client.WithClock(clock))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ts.Close() })

	ctx, caller := tracing.Tracer().Start(context.Background(), "caller")
	tok, err := ts.TokenContext(ctx)
	caller.End()
	require.NoError(t, err)
	require.Equal(t, "tok-7", tok.AccessToken)
	link, ok := client.RenewalLink(tok)
	require.True(t, ok, "the token should name its renewal")
	require.Equal(t, renewalSC.TraceID(), link.SpanContext.TraceID(), "the token's link is to the renewal's trace")
	require.Equal(t, renewalSC.SpanID(), link.SpanContext.SpanID())

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
	require.Len(t, server.Links(), 1)
	require.Equal(t, renewalSC.SpanID(), server.Links()[0].SpanContext.SpanID(), "the service's span links to the renewal")

	// The reply itself, from the store, then from the cache while the
	// store is down.
	get := func() *nats.Msg {
		t.Helper()
		msg := nats.NewMsg(client.TokenSubject(prefix, vendor, credential))
		tracing.InjectNATS(ctx, msg)
		reply, err := nc.RequestMsg(msg, wait)
		require.NoError(t, err)
		require.Contains(t, string(reply.Data), "tok-7")
		return reply
	}
	require.Equal(t, cred.RenewalTrace, get().Header.Get("traceparent"), "from the store")
	down.Store(true)
	require.Equal(t, cred.RenewalTrace, get().Header.Get("traceparent"), "from the cache")

	tracingtest.RequireNothingOf(t, rec, "tok-7", "refresh-7")
}

// A token whose renewal was not traced (tracing off, or not sampled)
// comes with no trace context: nothing to link to, and no stray one.
func TestTokenGetOfAnUntracedRenewalNamesNone(t *testing.T) {
	tracingtest.Record(t)
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	start(t, nc, prefix, func(context.Context, string) (store.Credential, error) { return active(), nil }, tokenservice.Options{})
	ts, err := client.NewTokenSource(nc, vendor, credential, client.WithSubjectPrefix(prefix), client.WithClock(clock))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ts.Close() })

	ctx, caller := tracing.Tracer().Start(context.Background(), "caller")
	defer caller.End()
	tok, err := ts.TokenContext(ctx)
	require.NoError(t, err)
	_, ok := client.RenewalLink(tok)
	require.False(t, ok)

	msg := nats.NewMsg(client.TokenSubject(prefix, vendor, credential))
	tracing.InjectNATS(ctx, msg)
	reply, err := nc.RequestMsg(msg, wait)
	require.NoError(t, err)
	require.Empty(t, reply.Header.Get("traceparent"))
}
