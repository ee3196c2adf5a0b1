package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace starts every tokenrelay metric name.
const Namespace = "tokenrelay"

// NewRegistry returns the registry a process serves at /metrics, holding
// the Go runtime and process collectors. Each package registers its own
// metrics on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
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
