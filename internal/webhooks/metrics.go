package webhooks

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a delivery, the outcome label of tokenrelay_webhooks_total.
const (
	OutcomeAccepted      = "accepted"
	OutcomeDuplicate     = "duplicate"
	OutcomeBadSignature  = "bad_signature"
	OutcomeStale         = "stale"
	OutcomeMalformed     = "malformed"
	OutcomeTooLarge      = "too_large"
	OutcomeUnknownVendor = "unknown_vendor"
	OutcomeUnavailable   = "unavailable"
	OutcomeHandshake     = "handshake"
	OutcomeHeartbeat     = "heartbeat"
	// OutcomeThrottled: the fetches the notification needs would exceed
	// the vendor's fetch rate; answered 503 with Retry-After, unrelayed.
	OutcomeThrottled = "throttled"
)

// Limits that held back fetches, the limit label of
// tokenrelay_webhook_fetches_limited_total.
const (
	// LimitPerDelivery: resources of one notification beyond its
	// max_fetches_per_delivery, not fetched.
	LimitPerDelivery = "per_delivery"
	// LimitRate: fetches refused by the vendor's fetch_rate (a throttled
	// notification's, or a deferred catch-up).
	LimitRate = "rate"
	// LimitCatchUp: catch-ups that asked for max_catch_up events of a wider
	// gap.
	LimitCatchUp = "catch_up"
)

// unknownVendorLabel is the vendor label of deliveries to a vendor that is
// not configured: the path's value never becomes a label.
const unknownVendorLabel = "unknown"

// Metrics are the webhook and polling metrics. Build them with NewMetrics
// and register them (it is a prometheus.Collector); nil means none.
type Metrics struct {
	Deliveries   *prometheus.CounterVec
	Duration     *prometheus.HistogramVec
	PollingOn    *prometheus.GaugeVec
	ModeChanges  *prometheus.CounterVec
	FetchesTotal *prometheus.CounterVec
	// FetchesLimited counts fetches held back by the bounds on what a
	// notification may cost, by limit (the Limit* constants).
	FetchesLimited *prometheus.CounterVec
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics makes the metrics, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_webhooks_total",
			Help: "Webhook deliveries received, by vendor and outcome.",
		}, []string{"vendor", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokenrelay_webhook_duration_seconds",
			Help:    "Time from a webhook request to its answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"vendor"}),
		PollingOn: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenrelay_polling_active",
			Help: "1 while a vendor resource is polled (no or silent webhooks), 0 while webhooks flow.",
		}, []string{"vendor", "resource"}),
		ModeChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_polling_mode_changes_total",
			Help: "Changes of a vendor resource between webhooks and polling, by the mode changed to.",
		}, []string{"vendor", "resource", "mode"}),
		FetchesTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_webhook_fetches_total",
			Help: "Fetches enqueued because of webhooks and polling, by reason (id_only, catch_up, poll).",
		}, []string{"vendor", "reason"}),
		FetchesLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_webhook_fetches_limited_total",
			Help: "Fetches notifications asked for but did not get, by the limit that held them back (per_delivery, rate, catch_up).",
		}, []string{"vendor", "limit"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.Deliveries.Describe(ch)
	m.Duration.Describe(ch)
	m.PollingOn.Describe(ch)
	m.ModeChanges.Describe(ch)
	m.FetchesTotal.Describe(ch)
	m.FetchesLimited.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.Deliveries.Collect(ch)
	m.Duration.Collect(ch)
	m.PollingOn.Collect(ch)
	m.ModeChanges.Collect(ch)
	m.FetchesTotal.Collect(ch)
	m.FetchesLimited.Collect(ch)
}

func (m *Metrics) delivery(vendor, outcome string, seconds float64) {
	if m == nil {
		return
	}
	m.Deliveries.WithLabelValues(vendor, outcome).Inc()
	m.Duration.WithLabelValues(vendor).Observe(seconds)
}

func (m *Metrics) fetch(vendor, reason string) {
	if m == nil {
		return
	}
	m.FetchesTotal.WithLabelValues(vendor, reason).Inc()
}

func (m *Metrics) limited(vendor, limit string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.FetchesLimited.WithLabelValues(vendor, limit).Add(float64(n))
}
