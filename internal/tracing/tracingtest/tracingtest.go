// Package tracingtest records the spans a test makes, in memory, and checks
// what they hold: for tests of the packages that trace (requests, webhooks,
// tokenservice).
package tracingtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// Record installs an in-memory tracer provider and the W3C propagator for
// the rest of t (the provider is global: a test that records must not run
// in parallel with another that does).
func Record(t testing.TB) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	if _, err := tracing.Setup(context.Background(), "test", func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	return rec
}

// InTrace returns the ended spans of trace id, by name (several of one
// name in the order they ended).
func InTrace(rec *tracetest.SpanRecorder, id trace.TraceID) map[string][]sdktrace.ReadOnlySpan {
	out := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			out[s.Name()] = append(out[s.Name()], s)
		}
	}
	return out
}

// Text is everything spans say (names, attributes, events and their
// attributes, statuses, links' attributes), one string, for checking that
// nothing secret is in it.
func Text(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "%s %s %s\n", s.Name(), s.Status().Code, s.Status().Description)
		for _, a := range s.Attributes() {
			fmt.Fprintf(&b, " %s=%s\n", a.Key, a.Value.Emit())
		}
		for _, e := range s.Events() {
			fmt.Fprintf(&b, " event %s\n", e.Name)
			for _, a := range e.Attributes {
				fmt.Fprintf(&b, "  %s=%s\n", a.Key, a.Value.Emit())
			}
		}
		for _, l := range s.Links() {
			for _, a := range l.Attributes {
				fmt.Fprintf(&b, " link %s=%s\n", a.Key, a.Value.Emit())
			}
		}
	}
	return b.String()
}

// RequireNothingOf fails t when any recorded span holds one of forbidden
// (secrets, tokens, patient data markers).
func RequireNothingOf(t testing.TB, rec *tracetest.SpanRecorder, forbidden ...string) {
	t.Helper()
	text := Text(rec.Ended())
	for _, f := range forbidden {
		if f != "" && strings.Contains(text, f) {
			t.Fatalf("a span holds %q:\n%s", f, text)
		}
	}
}
