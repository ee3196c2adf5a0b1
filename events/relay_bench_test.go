package events_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
)

// BenchmarkRelayThroughput drains a backlog of b.N events.
func BenchmarkRelayThroughput(b *testing.B) {
	bb := setup(b)
	ctx := b.Context()
	creds := []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"}
	for from := 0; from < b.N; from += 512 {
		envs := renewals(b, creds, from, 64)
		require.NoError(b, bb.outbox.Append(ctx, envs[:min(len(envs), b.N-from)]...))
	}
	opts := bb.relayOptions(b)
	opts.Logger = zerolog.Nop()
	b.ResetTimer()
	start := time.Now()
	startRelay(b, opts)
	require.Eventually(b, func() bool {
		depth, err := bb.outbox.Depth(ctx)
		return err == nil && depth == 0
	}, 5*time.Minute, time.Millisecond)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkRelayLag offers a steady 4000 events/s, one event per Append as
// the credential store writes them, and reports the outbox-to-JetStream lag.
func BenchmarkRelayLag(b *testing.B) {
	bb := setup(b)
	ctx := b.Context()
	var (
		mu   sync.Mutex
		lags []time.Duration
	)
	opts := bb.relayOptions(b)
	opts.Logger = zerolog.Nop()
	opts.OnPublished = func(_ events.Envelope, lag time.Duration) {
		mu.Lock()
		lags = append(lags, lag)
		mu.Unlock()
	}
	startRelay(b, opts)
	const writers, rate = 8, 4000
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			tick := time.NewTicker(time.Second * writers / rate)
			defer tick.Stop()
			for i := w; i < b.N; i += writers {
				<-tick.C
				env := renewal(b, "v", "c"+string(rune('a'+w)), i)
				if err := bb.outbox.Append(ctx, env); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Eventually(b, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lags) >= b.N
	}, time.Minute, time.Millisecond)
	b.StopTimer()
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "max-ms")
}
