package budget

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the budget's Prometheus metrics, labelled by account (the
// vendor label: the vendor instance, or "vendor/credential" for vendors
// that limit each OAuth client, see Account). A nil *Metrics records
// nothing.
type Metrics struct {
	Limit       *prometheus.GaugeVec
	Used        *prometheus.GaugeVec
	Remaining   *prometheus.GaugeVec
	PausedUntil *prometheus.GaugeVec
	RateLimited *prometheus.CounterVec
	Waits       *prometheus.CounterVec
}

// NewMetrics builds the budget's metrics; register them with Collectors.
func NewMetrics() *Metrics {
	label := []string{"vendor"}
	return &Metrics{
		Limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenrelay_budget_limit", Help: "Requests allowed per window, as in force (configured or learned from the vendor).",
		}, label),
		Used: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenrelay_budget_used", Help: "Permits counted in the current window, leased ones included.",
		}, label),
		Remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenrelay_budget_remaining", Help: "Permits left in the current window.",
		}, label),
		PausedUntil: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenrelay_budget_paused_until_timestamp_seconds", Help: "End of the pause a 429 asked for (unix seconds; 0 or past: not paused).",
		}, label),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_budget_429_total", Help: "429 answers observed from the vendor.",
		}, label),
		Waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_budget_waits_total", Help: "Permits refused for now (the request waits for the budget).",
		}, label),
	}
}

// Collectors lists the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Limit, m.Used, m.Remaining, m.PausedUntil, m.RateLimited, m.Waits}
}

func (m *Metrics) set(account string, limit, used int, paused time.Time) {
	if m == nil {
		return
	}
	m.Limit.WithLabelValues(account).Set(float64(limit))
	m.Used.WithLabelValues(account).Set(float64(used))
	m.Remaining.WithLabelValues(account).Set(float64(max(0, limit-used)))
	ts := 0.0
	if !paused.IsZero() {
		ts = float64(paused.UnixMilli()) / 1000
	}
	m.PausedUntil.WithLabelValues(account).Set(ts)
}

func (m *Metrics) wait(account string) {
	if m != nil {
		m.Waits.WithLabelValues(account).Inc()
	}
}

func (m *Metrics) rateLimited(account string) {
	if m != nil {
		m.RateLimited.WithLabelValues(account).Inc()
	}
}
