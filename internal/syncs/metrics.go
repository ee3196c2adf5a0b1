package syncs

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the syncs' Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	Started   *prometheus.CounterVec
	Pages     *prometheus.CounterVec
	Resources *prometheus.CounterVec
	Ended     *prometheus.CounterVec
}

// NewMetrics makes the metrics; register them with Collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		Started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokenrelay_syncs_started_total",
			Help: "Syncs started, by vendor and mode."}, []string{"vendor", "mode"}),
		Pages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokenrelay_sync_pages_total",
			Help: "Sync pages delivered (sync.page events), by vendor."}, []string{"vendor"}),
		Resources: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokenrelay_sync_resources_total",
			Help: "Resources delivered by syncs, by vendor."}, []string{"vendor"}),
		Ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokenrelay_syncs_ended_total",
			Help: "Syncs ended, by vendor and state (completed, failed, cancelled)."}, []string{"vendor", "state"}),
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Started, m.Pages, m.Resources, m.Ended}
}

func (m *Metrics) started(vendor, mode string) {
	if m != nil {
		m.Started.WithLabelValues(vendor, mode).Inc()
	}
}

func (m *Metrics) page(vendor string, resources int) {
	if m != nil {
		m.Pages.WithLabelValues(vendor).Inc()
		m.Resources.WithLabelValues(vendor).Add(float64(resources))
	}
}

func (m *Metrics) ended(vendor, state string) {
	if m != nil {
		m.Ended.WithLabelValues(vendor, state).Inc()
	}
}
