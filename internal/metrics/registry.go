package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
)

// Namespace starts every tokenrelay metric name.
const Namespace = "tokenrelay"

// NewRegistry returns the registry a process serves at /metrics, holding
// the Go runtime and process collectors and tokenrelay_build_info. Each
// package registers its own metrics on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewBuildInfo(buildinfo.Read()),
	)
	return reg
}

// NewBuildInfo is tokenrelay_build_info{version,commit,goversion}, always
// 1: which build a process runs, to see a fleet running mixed builds during
// a roll-out, or to join on (`* on(instance) group_left(version)`).
func NewBuildInfo(bi buildinfo.Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "The build of this process (always 1): version, commit (-dirty if modified) and Go version.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "commit": bi.Commit, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}

// Handler serves the registry in the Prometheus exposition format. A
// collector that fails (Redis unreachable during a scrape) is reported as
// an error in the scrape log and the other metrics are still served.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: false,
	})
}
