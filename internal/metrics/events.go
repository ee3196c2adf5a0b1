package metrics

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// OtherLabel replaces a label value outside its bounded set (an unknown
// vendor, error class or reason), so that no event can create new series.
const OtherLabel = "other"

// ErrorClasses are the refresh failure classes counted by name; any other
// class is counted as OtherLabel. "config" is a vendor missing from the
// configuration.
var ErrorClasses = []string{
	vendors.ClassRevoked, vendors.ClassNetwork, vendors.ClassTimeout, vendors.ClassServer,
	vendors.ClassRateLimited, vendors.ClassMalformed, vendors.ClassRejected, "config",
}

// RevocationReasons are the key.revoked reasons counted by name.
var RevocationReasons = []string{events.ReasonRevokedByVendor, events.ReasonRevokedByOperator, events.ReasonRotated}

// LeadTimeBuckets are the renewal lead-time histogram's buckets, in seconds:
// from a few seconds (sandbox tokens, a renewal cut close) to a week
// (long-lived keys).
var LeadTimeBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400}

// EventsOptions configure Events.
type EventsOptions struct {
	// Vendors are the configured vendor instance names; an event about any
	// other vendor is counted under OtherLabel. Empty accepts every vendor
	// name (they come from the configuration, so they are bounded anyway).
	Vendors []string
}

// Events counts the events the outbox relay publishes: renewals, refresh
// failures by class, the lead time left at each renewal, rotations,
// revocations by reason, and how long events waited in the outbox. Feed it
// with Observe as events.RelayOptions.OnPublished.
//
// Observe runs in the active relay only, after JetStream acknowledged the
// event, so each event is counted once across the cluster (sum over
// instances). A relay that crashes between the acknowledgement and deleting
// the entry publishes it again after the lease moves; JetStream drops the
// duplicate but it is counted a second time, a rare over-count.
type Events struct {
	vendors map[string]bool

	renewals    *prometheus.CounterVec
	failures    *prometheus.CounterVec
	leadTime    *prometheus.HistogramVec
	rotations   *prometheus.CounterVec
	revocations *prometheus.CounterVec
	expirations *prometheus.CounterVec
	relayDelay  prometheus.Histogram
}

var _ prometheus.Collector = (*Events)(nil)

// NewEvents builds the event counters; register the result on a registry.
func NewEvents(o EventsOptions) *Events {
	e := &Events{
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "renewals_total",
			Help: "Token renewals (token.renewed events published), by vendor.",
		}, []string{"vendor"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "refresh_failures_total",
			Help: "Failed token refreshes (token.refresh_failed events, and key.revoked by the vendor), by vendor and error class.",
		}, []string{"vendor", "class"}),
		leadTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "renewal_lead_time_seconds",
			Help:    "Time the previous token still had to live when it was renewed (0 if it had expired), by vendor.",
			Buckets: LeadTimeBuckets,
		}, []string{"vendor"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rotations_total",
			Help: "Key rotations completed (key.rotated events), by vendor.",
		}, []string{"vendor"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "revocations_total",
			Help: "Keys revoked (key.revoked events), by vendor and reason.",
		}, []string{"vendor", "reason"}),
		expirations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "token_expirations_total",
			Help: "Tokens that expired before a refresh succeeded (token.expired events), by vendor.",
		}, []string{"vendor"}),
		relayDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "outbox_relay_delay_seconds",
			Help:    "Time from an event's write to the outbox to its acknowledgement by JetStream.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 15, 60, 300},
		}),
	}
	if len(o.Vendors) > 0 {
		e.vendors = make(map[string]bool, len(o.Vendors))
		for _, v := range o.Vendors {
			e.vendors[v] = true
			// Zero series for every vendor, so that rate() has a start.
			e.renewals.WithLabelValues(v)
			e.rotations.WithLabelValues(v)
			e.expirations.WithLabelValues(v)
		}
	}
	return e
}

// Describe implements prometheus.Collector.
func (e *Events) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range e.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (e *Events) Collect(ch chan<- prometheus.Metric) {
	for _, c := range e.collectors() {
		c.Collect(ch)
	}
}

func (e *Events) collectors() []prometheus.Collector {
	return []prometheus.Collector{e.renewals, e.failures, e.leadTime, e.rotations, e.revocations, e.expirations, e.relayDelay}
}

// eventData holds the fields of every event type Observe reads.
type eventData struct {
	Vendor            string    `json:"vendor"`
	ExpiresAt         time.Time `json:"expires_at"`
	PreviousExpiresAt time.Time `json:"previous_expires_at"`
	Class             string    `json:"error_class"`
	Reason            string    `json:"reason"`
}

// Observe counts one published event; lag is how long it waited in the
// outbox. Its signature is events.RelayOptions.OnPublished's.
func (e *Events) Observe(env events.Envelope, lag time.Duration) {
	if lag >= 0 {
		e.relayDelay.Observe(lag.Seconds())
	}
	var d eventData
	if len(env.Data) > 0 && json.Unmarshal(env.Data, &d) != nil {
		return // not one of ours: nothing to count
	}
	vendor := e.vendor(d.Vendor)
	switch env.Type {
	case events.TypeTokenRenewed:
		e.renewals.WithLabelValues(vendor).Inc()
		if !d.PreviousExpiresAt.IsZero() && !env.Time.IsZero() {
			e.leadTime.WithLabelValues(vendor).Observe(max(d.PreviousExpiresAt.Sub(env.Time), 0).Seconds())
		}
	case events.TypeTokenRefreshFailed:
		e.failures.WithLabelValues(vendor, bounded(d.Class, ErrorClasses)).Inc()
	case events.TypeTokenExpired:
		e.expirations.WithLabelValues(vendor).Inc()
	case events.TypeKeyRotated:
		e.rotations.WithLabelValues(vendor).Inc()
	case events.TypeKeyRevoked:
		reason := bounded(d.Reason, RevocationReasons)
		e.revocations.WithLabelValues(vendor, reason).Inc()
		if reason == events.ReasonRevokedByVendor {
			// The refresh that learned of it failed definitively.
			e.failures.WithLabelValues(vendor, vendors.ClassRevoked).Inc()
		}
	}
}

func (e *Events) vendor(v string) string {
	if v == "" || (e.vendors != nil && !e.vendors[v]) {
		return OtherLabel
	}
	return v
}

// bounded returns v if it is one of known, else OtherLabel.
func bounded(v string, known []string) string {
	if slices.Contains(known, v) {
		return v
	}
	return OtherLabel
}
