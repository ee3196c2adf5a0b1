package testenv

import (
	"context"
	"testing"

	"github.com/tokenrelay/tokenrelay/internal/jaegerdev"
)

// Jaeger is a Jaeger started for one test (see [jaegerdev.Jaeger]).
type Jaeger = jaegerdev.Jaeger

// JaegerSpan is a span as Jaeger's API returns it.
type JaegerSpan = jaegerdev.Span

// StartJaeger builds Jaeger from tools/jaeger the first time, starts it on
// free ports and stops it when the test ends.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	j, err := jaegerdev.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Stop)
	return j
}
