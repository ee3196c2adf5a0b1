package tokenservice

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// traceServe starts the server span of one token.get: a child of the
// caller's span when its request's headers carry one (package client puts
// them there). It names the vendor and credential, never the token.
func traceServe(req micro.Request, vendor, credential string) (context.Context, trace.Span) {
	return tracing.StartServer(context.Background(), "token.get", nats.Header(req.Headers()),
		tracing.AttrVendor.String(vendor), tracing.AttrCredential.String(credential))
}

// endServe records the reply's outcome on the span: the generation handed
// out and a link to the renewal that produced the token (when sampled), or
// the error code.
func endServe(span trace.Span, a answer) {
	if !span.IsRecording() {
		return
	}
	reply := a.reply
	if reply.Error != "" {
		span.SetAttributes(attribute.String("tokenrelay.outcome", reply.Error))
		span.SetStatus(codes.Error, reply.Error)
		return
	}
	span.SetAttributes(attribute.String("tokenrelay.outcome", "token"), tracing.AttrGeneration.Int64(reply.Generation))
	if sc := a.renewal.SpanContext(); sc.IsValid() {
		span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("tokenrelay.link", "renewal")}})
	}
}
