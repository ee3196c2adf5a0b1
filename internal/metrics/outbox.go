package metrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
)

// Outbox reads the event outbox's depth and the age of its oldest entry. It
// is a collector (tokenrelay_outbox_depth, tokenrelay_outbox_lag_seconds)
// and answers readiness checks (Stuck).
type Outbox struct {
	rdb   redis.UniversalClient
	key   string
	clock func() time.Time

	depth, lag *prometheus.Desc
}

var _ prometheus.Collector = (*Outbox)(nil)

// NewOutbox reads the outbox under a Redis key prefix ("" means
// events.DefaultPrefix). clock may be nil (time.Now).
func NewOutbox(rdb redis.UniversalClient, prefix string, clock func() time.Time) *Outbox {
	if prefix == "" {
		prefix = events.DefaultPrefix
	}
	if clock == nil {
		clock = time.Now
	}
	return &Outbox{
		rdb: rdb, key: events.OutboxKey(prefix), clock: clock,
		depth: prometheus.NewDesc(Namespace+"_outbox_depth",
			"Events waiting in the Redis outbox for the relay to publish them to JetStream.", nil, nil),
		lag: prometheus.NewDesc(Namespace+"_outbox_lag_seconds",
			"Age of the oldest event waiting in the outbox (0 when it is empty).", nil, nil),
	}
}

// OutboxStatus is the outbox at one moment.
type OutboxStatus struct {
	// Depth is the number of entries waiting.
	Depth int64
	// Lag is the age of the oldest entry, 0 when there is none.
	Lag time.Duration
}

// Status reads the outbox's depth and the age of its oldest entry.
func (o *Outbox) Status(ctx context.Context) (OutboxStatus, error) {
	p := o.rdb.Pipeline()
	n := p.XLen(ctx, o.key)
	first := p.XRangeN(ctx, o.key, "-", "+", 1)
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return OutboxStatus{}, fmt.Errorf("metrics: read outbox: %w", err)
	}
	st := OutboxStatus{Depth: n.Val()}
	if msgs := first.Val(); len(msgs) > 0 {
		if at, ok := streamIDTime(msgs[0].ID); ok {
			st.Lag = max(o.clock().Sub(at), 0)
		}
	}
	return st, nil
}

// Stuck reports an error if events have waited in the outbox longer than
// after: the relay is not running, or cannot reach NATS.
func (o *Outbox) Stuck(ctx context.Context, after time.Duration) error {
	st, err := o.Status(ctx)
	if err != nil {
		return err
	}
	if st.Depth > 0 && st.Lag > after {
		return fmt.Errorf("outbox stuck: %d events waiting, the oldest for %s (is a scheduler running and reaching NATS?)",
			st.Depth, st.Lag.Round(time.Second))
	}
	return nil
}

// Describe implements prometheus.Collector.
func (o *Outbox) Describe(ch chan<- *prometheus.Desc) {
	ch <- o.depth
	ch <- o.lag
}

// Collect implements prometheus.Collector.
func (o *Outbox) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := o.Status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(o.depth, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(o.depth, prometheus.GaugeValue, float64(st.Depth))
	ch <- prometheus.MustNewConstMetric(o.lag, prometheus.GaugeValue, st.Lag.Seconds())
}

// streamIDTime is the time in a Redis stream id ("<unix ms>-<seq>").
func streamIDTime(id string) (time.Time, bool) {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}
