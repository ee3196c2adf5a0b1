// Package natsprop carries the W3C trace context in NATS message headers
// with the otel API alone (no SDK), so that package client can use it
// without pulling in exporters. Package tracing builds on it.
package natsprop

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// Inject writes ctx's trace context into h (nothing when ctx holds no
// span), with the global propagator.
func Inject(ctx context.Context, h nats.Header) {
	if h == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	otel.GetTextMapPropagator().Inject(ctx, Carrier(h))
}

// Extract returns ctx carrying the span h names as its remote parent.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, Carrier(h))
}

// Carrier writes header names as the W3C spells them (traceparent,
// tracestate: NATS headers are case-sensitive, and other languages'
// propagators look for those exact names) and reads either spelling.
type Carrier nats.Header

// Get implements propagation.TextMapCarrier.
func (c Carrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	return http.Header(c).Get(key)
}

// Set implements propagation.TextMapCarrier.
func (c Carrier) Set(key, value string) { c[key] = []string{value} }

// Keys implements propagation.TextMapCarrier.
func (c Carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
