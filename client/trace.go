package client

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
)

// ExtraRenewalTrace is the key (oauth2.Token.Extra) under which a token
// from a TokenSource carries the W3C traceparent of the relay's renewal
// that produced it; read it with RenewalLink.
const ExtraRenewalTrace = "tokenrelay_renewal_traceparent"

// RenewalLink returns a link to the relay's renewal that produced tok (the
// commit of the token, in the renewal's trace), for the span of the work
// that uses the token:
//
//	tok, err := ts.TokenContext(ctx)
//	...
//	var opts []trace.SpanStartOption
//	if link, ok := client.RenewalLink(tok); ok {
//		opts = append(opts, trace.WithLinks(link))
//	}
//	ctx, span := tracer.Start(ctx, "call vendor", opts...)
//
// ok is false when the relay kept no trace of that renewal (tracing off,
// or the renewal not sampled) or tok did not come from a TokenSource.
func RenewalLink(tok *oauth2.Token) (trace.Link, bool) {
	if tok == nil {
		return trace.Link{}, false
	}
	tp, _ := tok.Extra(ExtraRenewalTrace).(string)
	l := renewalLink(tp)
	return l, l.SpanContext.IsValid()
}

// renewalLink is the link to the span traceparent names (invalid when it
// names none).
func renewalLink(traceparent string) trace.Link {
	if traceparent == "" {
		return trace.Link{}
	}
	return trace.LinkFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": traceparent}))
}
