package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RunningSyncs counts the running syncs of each configured vendor
// (syncs.Runner does, from Redis).
type RunningSyncs interface {
	Running(ctx context.Context) (map[string]int, error)
}

// Syncs is tokenrelay_syncs_running{vendor}, the syncs running now, read
// from Redis on scrape (as the outbox gauges are), so that every replica
// reports the installation's count: aggregate with max. How syncs end is
// counted by the syncs package's tokenrelay_syncs_ended_total{vendor,state},
// their progress by tokenrelay_sync_pages_total and
// tokenrelay_sync_resources_total.
type Syncs struct {
	src     RunningSyncs
	running *prometheus.Desc
}

var _ prometheus.Collector = (*Syncs)(nil)

// NewSyncs returns the collector; register it on a registry.
func NewSyncs(src RunningSyncs) *Syncs {
	return &Syncs{src: src, running: prometheus.NewDesc(Namespace+"_syncs_running",
		"Syncs running now (started, not yet completed, failed or cancelled), by vendor.", []string{"vendor"}, nil)}
}

// Describe implements prometheus.Collector.
func (s *Syncs) Describe(ch chan<- *prometheus.Desc) { ch <- s.running }

// Collect implements prometheus.Collector.
func (s *Syncs) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := s.src.Running(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(s.running, err)
		return
	}
	for vendor, n := range counts {
		ch <- prometheus.MustNewConstMetric(s.running, prometheus.GaugeValue, float64(n), vendor)
	}
}
