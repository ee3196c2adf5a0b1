package metrics_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/metrics/metricstest"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// scanFunc is a Scanner built from a function.
type scanFunc func(ctx context.Context, fn func(store.Summary) error) error

func (f scanFunc) Scan(ctx context.Context, fn func(store.Summary) error) error { return f(ctx, fn) }

func TestCredentialsReadsTheStoreOncePerTTL(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	var (
		scans atomic.Int32
		mu    sync.Mutex // guards sums
	)
	sums := []store.Summary{
		{ID: "a", Vendor: "halaxy-au", State: store.StateActive, IssuedAt: clock.Now(), ExpiresAt: clock.Now().Add(15 * time.Minute)},
		{ID: "b", Vendor: "removed-vendor", State: store.StateFailing},
	}
	creds, err := metrics.NewCredentials(metrics.CredentialsOptions{
		Store: scanFunc(func(_ context.Context, fn func(store.Summary) error) error {
			scans.Add(1)
			mu.Lock()
			defer mu.Unlock()
			for _, s := range sums {
				if err := fn(s); err != nil {
					return err
				}
			}
			return nil
		}),
		Vendors: []string{"halaxy-au", "portal"}, TTL: 30 * time.Second, Clock: clock.Now,
	})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(creds)
	h := metrics.Handler(reg)

	sc := metricstest.Serve(t, h)
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials", "vendor", "halaxy-au", "state", "active"))
	require.Equal(t, 0.0, sc.Value(t, "tokenrelay_credentials", "vendor", "portal", "state", "active"), "a configured vendor has zero series")
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials", "vendor", metrics.OtherLabel, "state", "failing"), "an unknown vendor is bounded")
	require.EqualValues(t, 1, scans.Load())

	mu.Lock()
	sums[0].State = store.StateRevoked
	mu.Unlock()
	clock.Advance(10 * time.Second)
	sc = metricstest.Serve(t, h)
	require.EqualValues(t, 1, scans.Load(), "a scrape within the TTL reuses the last read")
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials", "vendor", "halaxy-au", "state", "active"))
	require.Equal(t, 10.0, sc.Value(t, "tokenrelay_credentials_read_age_seconds"))

	// Past the TTL a scrape is still served at once, from the old read,
	// and starts a new one in the background.
	clock.Advance(30 * time.Second)
	sc = metricstest.Serve(t, h)
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials", "vendor", "halaxy-au", "state", "active"))
	require.Eventually(t, func() bool {
		return scans.Load() == 2 &&
			metricstest.Serve(t, h).Value(t, "tokenrelay_credentials", "vendor", "halaxy-au", "state", "revoked") == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.EqualValues(t, 2, scans.Load())
}

func TestCredentialsReportsAFailedRead(t *testing.T) {
	t.Parallel()
	creds, err := metrics.NewCredentials(metrics.CredentialsOptions{TTL: -1,
		Store: scanFunc(func(context.Context, func(store.Summary) error) error { return redis.ErrClosed })})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(creds)
	sc := metricstest.Serve(t, metrics.Handler(reg))
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials_scrape_error"))
}

func TestOutboxStuck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	later := time.Now()
	ob := metrics.NewOutbox(rdb, prefix, func() time.Time { return later })

	require.NoError(t, ob.Stuck(ctx, time.Minute), "an empty outbox is not stuck")
	st, err := ob.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, metrics.OutboxStatus{}, st)

	ev, err := events.New(events.TypeTokenRenewed, "v", "c", time.Now(), events.TokenRenewed{Vendor: "v", Credential: "c"})
	require.NoError(t, err)
	require.NoError(t, events.NewOutbox(rdb, prefix).Append(ctx, ev, ev))
	require.NoError(t, ob.Stuck(ctx, time.Minute), "fresh entries are not stuck")

	later = time.Now().Add(5 * time.Minute)
	st, err = ob.Status(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, st.Depth)
	require.Greater(t, st.Lag, 4*time.Minute)
	require.ErrorContains(t, ob.Stuck(ctx, time.Minute), "outbox stuck: 2 events waiting")

	reg := prometheus.NewRegistry()
	reg.MustRegister(ob)
	sc := metricstest.Serve(t, metrics.Handler(reg))
	require.Equal(t, 2.0, sc.Value(t, "tokenrelay_outbox_depth"))
	require.Greater(t, sc.Value(t, "tokenrelay_outbox_lag_seconds"), 240.0)
}

// TestCredentialsPerVendorOnly: without the per-credential series, each
// vendor still has its soonest expiry and oldest renewal among the
// credentials in service (a revoked one's past token does not count).
func TestCredentialsPerVendorOnly(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 24, 1, 0, 0, 0, time.UTC)
	sums := []store.Summary{
		{ID: "a", Vendor: "halaxy-au", State: store.StateActive, IssuedAt: t0, ExpiresAt: t0.Add(15 * time.Minute)},
		{ID: "b", Vendor: "halaxy-au", State: store.StateFailing, IssuedAt: t0.Add(-10 * time.Minute), ExpiresAt: t0.Add(5 * time.Minute)},
		{ID: "c", Vendor: "halaxy-au", State: store.StateRevoked, IssuedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(-45 * time.Minute)},
		{ID: "d", Vendor: "portal", State: store.StateActive, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)},
	}
	scan := scanFunc(func(_ context.Context, fn func(store.Summary) error) error {
		for _, s := range sums {
			if err := fn(s); err != nil {
				return err
			}
		}
		return nil
	})
	for _, perVendorOnly := range []bool{false, true} {
		creds, err := metrics.NewCredentials(metrics.CredentialsOptions{Store: scan, TTL: -1,
			Vendors: []string{"halaxy-au", "portal"}, PerVendorOnly: perVendorOnly})
		require.NoError(t, err)
		reg := prometheus.NewRegistry()
		reg.MustRegister(creds)
		sc := metricstest.Serve(t, metrics.Handler(reg))
		unix := func(t time.Time) float64 { return float64(t.Unix()) }
		require.Equal(t, unix(t0.Add(5*time.Minute)), sc.Value(t, "tokenrelay_token_expiry_earliest_timestamp_seconds", "vendor", "halaxy-au"))
		require.Equal(t, unix(t0.Add(-10*time.Minute)), sc.Value(t, "tokenrelay_token_last_renewal_oldest_timestamp_seconds", "vendor", "halaxy-au"))
		require.Equal(t, unix(t0.Add(time.Hour)), sc.Value(t, "tokenrelay_token_expiry_earliest_timestamp_seconds", "vendor", "portal"))
		require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials", "vendor", "halaxy-au", "state", "revoked"))
		perCredential := sc.Find("tokenrelay_token_expiry_timestamp_seconds", "credential", "a") != nil
		require.Equal(t, !perVendorOnly, perCredential, "per-credential series with PerVendorOnly=%v", perVendorOnly)
	}
}
