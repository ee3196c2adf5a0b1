// Package metricstest reads Prometheus scrapes in tests: it fetches a
// /metrics page, parses it, and finds a series by its labels.
package metricstest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one parsed scrape.
type Scrape struct {
	// Body is the page as served, for grepping.
	Body string
	// Families are the metric families by name.
	Families map[string]*dto.MetricFamily
}

// Get fetches url (a /metrics page) with client (nil: http.DefaultClient)
// and parses it; it fails the test unless the answer is 200 and parses.
func Get(t testing.TB, client *http.Client, url string) Scrape {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("metricstest: GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metricstest: read %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metricstest: GET %s: status %d: %s", url, resp.StatusCode, raw)
	}
	return Parse(t, string(raw))
}

// Serve scrapes a metrics handler through a test server.
func Serve(t testing.TB, h http.Handler) Scrape {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	return Get(t, srv.Client(), srv.URL)
}

// Parse parses a page in the Prometheus text format.
func Parse(t testing.TB, body string) Scrape {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("metricstest: parse scrape: %v", err)
	}
	return Scrape{Body: body, Families: fams}
}

// Find returns the first series of the family whose labels include the
// given name/value pairs, or nil.
func (s Scrape) Find(name string, labels ...string) *dto.Metric {
	fam := s.Families[name]
	if fam == nil {
		return nil
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

// Metric is Find, failing the test when there is no such series.
func (s Scrape) Metric(t testing.TB, name string, labels ...string) *dto.Metric {
	t.Helper()
	m := s.Find(name, labels...)
	if m == nil {
		t.Fatalf("metricstest: no %s%v in the scrape", name, labels)
	}
	return m
}

// Value is the value of a counter, gauge or untyped series (see Metric).
func (s Scrape) Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	m := s.Metric(t, name, labels...)
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}
