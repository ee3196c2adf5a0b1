// Package benchtrace is the benchmarks' -trace mode: tracing off (the
// no-op provider, as deployed without OTEL_* variables) or on at a
// sampling percentage, exporting over OTLP/HTTP to a Jaeger of its own.
// Tracing is turned on through the standard OTEL_* variables that a
// deployment sets (parent-based trace-id ratio sampling), so the measured
// path is the deployed one: tracing.Setup, the SDK's batch span processor,
// the OTLP exporter and a real collector receiving every sampled span.
package benchtrace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/jaegerdev"
)

// Mode is a -trace value: 0 for off, else the percentage of traces sampled.
type Mode float64

// Parse reads a -trace value: "off" or a percentage in (0, 100].
func Parse(s string) (Mode, error) {
	if s == "" || s == "off" {
		return 0, nil
	}
	p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || p <= 0 || p > 100 {
		return 0, fmt.Errorf("-trace %q: want off or a sampling percentage in (0, 100]", s)
	}
	return Mode(p), nil
}

// String is the mode as a table shows it.
func (m Mode) String() string {
	if m == 0 {
		return "off"
	}
	return strconv.FormatFloat(float64(m), 'g', -1, 64) + "%"
}

// Collector is the Jaeger an on mode exports to.
type Collector struct {
	jaeger *jaegerdev.Jaeger
	// Env is the OTEL_* variables that turn tracing on at the mode's
	// sampling ratio, for os.Setenv or a child process's environment.
	Env []string
}

// Start starts Jaeger for an on mode; off needs nothing and returns nil.
func Start(ctx context.Context, m Mode) (*Collector, error) {
	if m == 0 {
		return nil, nil
	}
	j, err := jaegerdev.Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("benchtrace: %w", err)
	}
	return &Collector{jaeger: j, Env: []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + j.OTLPEndpoint,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_TRACES_SAMPLER=parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG=" + strconv.FormatFloat(float64(m)/100, 'g', -1, 64),
	}}, nil
}

// Services lists the services Jaeger received spans from: a check that
// the on mode did trace something.
func (c *Collector) Services() ([]string, error) {
	resp, err := http.Get(c.jaeger.QueryURL + "/api/services")
	if err != nil {
		return nil, fmt.Errorf("benchtrace: services: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("benchtrace: services: %w", err)
	}
	return body.Data, nil
}

// Stop stops Jaeger; a nil Collector does nothing.
func (c *Collector) Stop() {
	if c != nil {
		c.jaeger.Stop()
	}
}
