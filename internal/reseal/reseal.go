// Package reseal seals every stored value again under the current master
// key after a master-key rotation (package store does one pass; this
// package makes passes until none is left, and counts them in metrics).
// The worker runs it in the background at start (Start: one replica at a
// time, under a Redis lease) when previous keys are configured or the last
// clean pass was under another key; `tokenrelay keys reseal` runs the same
// passes in the foreground (Run).
package reseal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

// Options tune Run. Zero values take the defaults given.
type Options struct {
	// Batch is how many credentials are read per round trip (default 500).
	Batch int
	// LogEvery is how many credentials pass between progress reports
	// (default 1000); the end of each pass is always reported.
	LogEvery int64
	// MaxPasses bounds the passes made while writers keep changing values
	// (default 5).
	MaxPasses int
	// Progress is told of the progress every LogEvery credentials and at
	// the end of each pass (pass counts from 1).
	Progress func(pass int, p store.ResealProgress)
	// Metrics, when set, count the records and the values left.
	Metrics *Metrics
}

// ErrLeft: a re-seal ended with values it could not open (sealed
// under a key the keyring does not hold, or tampered with); they are still
// under their old key.
var ErrLeft = errors.New("reseal: values are left that could not be sealed again")

// Run seals again under the current key everything that is under an old
// key or the legacy binding, pass after pass until a pass finds nothing
// left (writers racing with a pass can leave a few values for the next),
// and records that the store is clean. It returns the last pass's totals;
// ErrLeft when values could not be opened.
func Run(ctx context.Context, st *store.Store, o Options) (store.ResealProgress, error) {
	if o.LogEvery <= 0 {
		o.LogEvery = 1000
	}
	if o.MaxPasses <= 0 {
		o.MaxPasses = 5
	}
	var last store.ResealProgress
	for pass := 1; pass <= o.MaxPasses; pass++ {
		var reported, counted store.ResealProgress
		p, err := st.Reseal(ctx, store.ResealOptions{Batch: o.Batch, Progress: func(p store.ResealProgress) {
			o.Metrics.count(counted, p)
			counted = p
			if o.Progress != nil && p.Scanned/o.LogEvery > reported.Scanned/o.LogEvery && p.Scanned < p.Total {
				o.Progress(pass, p)
				reported = p
			}
		}})
		if err != nil {
			return p, err
		}
		o.Metrics.count(counted, p)
		o.Metrics.left(p)
		if o.Progress != nil {
			o.Progress(pass, p)
		}
		last = p
		if p.Failed > 0 {
			return p, fmt.Errorf("%w: %d values (key ids %v)", ErrLeft, p.Failed, p.FailedKeys)
		}
		if p.Stale == 0 {
			if err := st.MarkResealDone(ctx); err != nil {
				return p, err
			}
			return p, nil
		}
	}
	return last, fmt.Errorf("reseal: writers kept changing values for %d passes; run it again", o.MaxPasses)
}

// Metrics are the re-seal's Prometheus metrics.
type Metrics struct {
	records *prometheus.CounterVec
	stale   prometheus.Gauge
}

// NewMetrics registers tokenrelay_reseal_records_total{outcome} (the
// sealed values a re-seal looked at: current, resealed, conflict, failed)
// and tokenrelay_reseal_stale_values (values left under an old key or
// binding, or that could not be opened, at the end of the last pass) on
// reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Name: "reseal_records_total",
			Help: "Sealed values looked at by the re-seal after a master-key rotation, by outcome (current, resealed, conflict, failed).",
		}, []string{"outcome"}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metrics.Namespace, Name: "reseal_stale_values",
			Help: "Sealed values left under an old master key or binding, or that could not be opened, at the end of the last re-seal pass.",
		}),
	}
	if err := errors.Join(reg.Register(m.records), reg.Register(m.stale)); err != nil {
		return nil, fmt.Errorf("reseal: metrics: %w", err)
	}
	for _, o := range []string{"current", "resealed", "conflict", "failed"} {
		m.records.WithLabelValues(o)
	}
	return m, nil
}

// count adds what a pass did between two of its progress reports.
func (m *Metrics) count(before, now store.ResealProgress) {
	if m == nil {
		return
	}
	for outcome, d := range map[string]int64{
		"current": now.Current - before.Current, "resealed": now.Resealed - before.Resealed,
		"conflict": now.Conflicts - before.Conflicts, "failed": now.Failed - before.Failed,
	} {
		if d > 0 {
			m.records.WithLabelValues(outcome).Add(float64(d))
		}
	}
}

func (m *Metrics) left(p store.ResealProgress) {
	if m != nil {
		m.stale.Set(float64(p.Left()))
	}
}

// Lease is how long the re-seal lease lasts without being extended.
const Lease = time.Minute

// Start runs the re-seal in the background when it is due: previous
// master keys are configured, or the last clean pass was under another key
// (or never ran: values may be under the legacy binding). It waits for the
// lease while another replica holds it, looking again every poll, and
// stops with ctx.
func Start(ctx context.Context, st *store.Store, log zerolog.Logger, m *Metrics, poll time.Duration) {
	done, err := st.ResealDone(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("cannot tell whether a re-seal is due; it is left to the next start or to tokenrelay keys reseal")
		return
	}
	if len(st.KeyIDs()) == 1 && done == st.CurrentKeyID() {
		return
	}
	log = log.With().Str("component", "reseal").Str("current_key", st.CurrentKeyID()).Logger()
	owner := hostname() + "/" + uuid.NewString()
	go func() {
		for {
			ok, err := st.ResealLease(ctx, owner, Lease)
			if err == nil && ok {
				break
			}
			if err != nil {
				log.Warn().Err(err).Msg("cannot take the re-seal lease")
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(poll):
			}
		}
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		go holdLease(runCtx, cancel, st, owner, log)
		defer func() { _ = st.ReleaseResealLease(context.WithoutCancel(ctx), owner) }()
		log.Info().Strs("keys", st.KeyIDs()).Msg("re-sealing values under old master keys")
		p, err := Run(runCtx, st, Options{Metrics: m, Progress: func(pass int, p store.ResealProgress) {
			logProgress(log.Info(), pass, p).Msg("re-seal progress")
		}})
		switch {
		case err != nil && ctx.Err() != nil:
			log.Info().Msg("re-seal stopped with the worker; the next start resumes it")
		case err != nil:
			logProgress(log.Error().Err(err), 0, p).Msg("re-seal did not finish")
		default:
			log.Info().Int64("values", p.Values).Msg("re-seal done: every value is under the current master key; previous keys may now be dropped")
		}
	}()
}

// holdLease extends the lease until ctx ends, and cancels the re-seal if
// the lease was lost.
func holdLease(ctx context.Context, cancel context.CancelFunc, st *store.Store, owner string, log zerolog.Logger) {
	t := time.NewTicker(Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, err := st.ResealLease(ctx, owner, Lease); err == nil && !ok {
				log.Warn().Msg("re-seal lease lost to another process; stopping")
				cancel()
				return
			}
		}
	}
}

// logProgress adds the fields of a re-seal's progress to a log event.
func logProgress(e *zerolog.Event, pass int, p store.ResealProgress) *zerolog.Event {
	if pass > 0 {
		e = e.Int("pass", pass)
	}
	return e.Int64("scanned", p.Scanned).Int64("total", p.Total).Int64("remaining", p.Remaining()).
		Int64("values", p.Values).Int64("resealed", p.Resealed).Int64("conflicts", p.Conflicts).Int64("failed", p.Failed)
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "tokenrelay"
	}
	return h
}
