package requests

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes counted by tokenrelay_requests_total.
const (
	OutcomeCompleted   = "completed"
	OutcomeFailed      = "failed"
	OutcomeRetried     = "retried"
	OutcomeRateLimited = "rate_limited"
	OutcomeCancelled   = "cancelled"
	OutcomeDuplicate   = "duplicate"
)

// Metrics are the request jobs' Prometheus metrics. Register them on a
// registry (they are a prometheus.Collector); a nil *Metrics counts nothing.
type Metrics struct {
	// Requests is tokenrelay_requests_total{vendor,outcome}.
	Requests *prometheus.CounterVec
	// Duration is tokenrelay_request_duration_seconds{vendor}: each vendor
	// call of a request job.
	Duration *prometheus.HistogramVec
}

// NewMetrics makes the metrics, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_requests_total",
			Help: "Request jobs by vendor and outcome (completed, failed, retried, rate_limited, cancelled, duplicate).",
		}, []string{"vendor", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokenrelay_request_duration_seconds",
			Help:    "Duration of the vendor calls of request jobs.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"vendor"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.Requests.Describe(ch)
	m.Duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.Requests.Collect(ch)
	m.Duration.Collect(ch)
}

func (m *Metrics) outcome(vendor, outcome string) {
	if m != nil {
		m.Requests.WithLabelValues(vendor, outcome).Inc()
	}
}

func (m *Metrics) call(vendor string, d time.Duration) {
	if m != nil {
		m.Duration.WithLabelValues(vendor).Observe(d.Seconds())
	}
}
