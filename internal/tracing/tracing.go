// Package tracing is tokenrelay's one home for OpenTelemetry: it sets up
// the tracer provider from the standard OTEL_* environment variables (off
// unless one names an exporter or an endpoint, and then at no cost: the
// global no-op provider stays), carries the W3C trace context across the
// two hops that are not HTTP (asynq task payloads and NATS message
// headers), and puts trace_id and span_id on log lines.
//
// What a span may carry: ids, vendor and credential names, generations,
// counts, durations, HTTP methods, hosts, paths and statuses. Never a
// secret, a token, a query string or a body: the vendor HTTP client's spans
// are made by [Transport], which drops everything else.
package tracing

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
)

// ScopeName names tokenrelay's instrumentation scope.
const ScopeName = "github.com/tokenrelay/tokenrelay"

// Tracer is the tracer every tokenrelay span is started from. It reads the
// global provider at each call, so it is a no-op until [Setup] installs one.
// The provider's tracer is kept until the global provider changes: the
// SDK's TracerProvider.Tracer builds the scope's attribute set on every
// call, which was a quarter of tracing's cost at 1 % sampling (issue 14).
func Tracer() trace.Tracer {
	p := otel.GetTracerProvider()
	if c := lastTracer.Load(); c != nil && c.provider == p {
		return c.tracer
	}
	t := p.Tracer(ScopeName)
	lastTracer.Store(&providerTracer{provider: p, tracer: t})
	return t
}

// Start starts a span named name as a child of ctx's span, as
// Tracer().Start does, except under a span the sampler dropped: there it
// starts nothing and returns ctx and that span, which records nothing. A
// child of a dropped span would be dropped too (tokenrelay's sampler is
// parent-based: OTEL_TRACES_SAMPLER's default, and parentbased_* are the
// ones to deploy), and the trace context it propagates is the same trace,
// still unsampled. Starting and dropping those spans was most of tracing's
// cost to the 99 renewals in 100 that 1 % sampling leaves out (issue 14).
// Roots (trace.WithNewRoot) go to Tracer().Start: the sampler decides.
//
// Build a span's attributes only when it records (span.IsRecording), not
// as options to Start, for the same reason.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !sc.IsSampled() {
		if span := trace.SpanFromContext(ctx); !span.IsRecording() {
			return ctx, span
		}
	}
	return Tracer().Start(ctx, name, opts...)
}

// providerTracer is a provider and the tracer it gave for [ScopeName]
// (providers are pointers or empty structs, so they compare).
type providerTracer struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
}

var lastTracer atomic.Pointer[providerTracer]

// Enabled reports whether getenv turns tracing on: OTEL_SDK_DISABLED is
// not "true", OTEL_TRACES_EXPORTER is not "none", and an exporter or an
// OTLP endpoint is named.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.ToLower(getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "otlp":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs an OTLP tracer provider for service when getenv turns
// tracing on (see [Enabled]) and the W3C trace-context propagator in every
// case. The exporter, its endpoint, headers and protocol
// (OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf by default, or grpc), the
// sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG; parent-based
// always-on by default) and OTEL_SERVICE_NAME are the SDK's own variables.
// The returned shutdown flushes what is buffered; it is never nil.
func Setup(ctx context.Context, service string, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !Enabled(getenv) {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := exporter(ctx, getenv)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	name := service
	if v := getenv("OTEL_SERVICE_NAME"); v != "" {
		name = v
	}
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(
		semconv.ServiceName(name),
		semconv.ServiceVersion(buildinfo.Read().Version),
	))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// exporter builds the OTLP exporter for OTEL_EXPORTER_OTLP_PROTOCOL (or its
// traces-only twin); the exporters read every other OTEL_EXPORTER_OTLP_*
// variable themselves.
func exporter(ctx context.Context, getenv func(string) string) (*otlptrace.Exporter, error) {
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", proto)
	}
}

// Attribute keys of tokenrelay's spans.
const (
	AttrVendor     = attribute.Key("tokenrelay.vendor")
	AttrCredential = attribute.Key("tokenrelay.credential")
	AttrGeneration = attribute.Key("tokenrelay.generation")
	AttrRequest    = attribute.Key("tokenrelay.request")
	AttrSync       = attribute.Key("tokenrelay.sync")
	AttrAttempt    = attribute.Key("tokenrelay.attempt")
	// AttrBudgetGranted and AttrBudgetWait describe a take of a vendor
	// account's rate budget: whether it granted a permit, and when not,
	// how long (milliseconds) the request waits for the next one.
	AttrBudgetGranted = attribute.Key("tokenrelay.budget.granted")
	AttrBudgetWait    = attribute.Key("tokenrelay.budget.wait_ms")
)

// Fail records err on span and marks it failed; a nil err does nothing.
func Fail(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}
