package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/metrics/metricstest"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// TestMetricsAfterRenewalFailureRevocation drives two credentials through
// the real store and outbox relay (real Redis and NATS): two renewals, a
// transient failure, a revocation by the vendor and one by an operator;
// then scrapes /metrics and checks every value.
func TestMetricsAfterRenewalFailureRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: kr})
	require.NoError(t, err)
	_, js, stream := testenv.NATS(t)
	subjectPrefix := testenv.Unique("m") + "."
	_, err = events.EnsureStream(ctx, js, events.StreamConfig{Name: stream, SubjectPrefix: subjectPrefix})
	require.NoError(t, err)

	const halaxy, portal = "halaxy-au", "portal"
	secrets := []string{"cs-halaxy-7a1c9e", "cs-portal-44b0d2", "at-first-1e2f3a", "at-second-9c8b7d", "rt-refresh-5d6e7f"}
	for _, c := range []struct{ id, vendor, secret string }{{"c1", halaxy, secrets[0]}, {"c2", portal, secrets[1]}} {
		_, err := st.Upsert(ctx, store.NewCredential{ID: c.id, Vendor: c.vendor, ClientID: "client-" + c.id,
			Keys: store.Keys{ClientSecret: secret.New(c.secret)}})
		require.NoError(t, err)
	}

	t0 := time.Now().Truncate(time.Second)
	renew := func(id string, gen int64, at, expires, previous time.Time, token string) {
		t.Helper()
		_, err := st.Claim(ctx, id, gen, "w1", time.Minute)
		require.NoError(t, err)
		ev, err := events.New(events.TypeTokenRenewed, halaxy, id, at, events.TokenRenewed{
			Vendor: halaxy, Credential: id, Generation: gen + 1, IssuedAt: at, ExpiresAt: expires,
			Fingerprint: secret.New(token).Fingerprint(), PreviousExpiresAt: previous,
		})
		require.NoError(t, err)
		require.NoError(t, st.CommitRenewal(ctx, id, "w1", gen, store.Renewal{
			Token:       store.Token{AccessToken: secret.New(token), TokenType: "Bearer", IssuedAt: at, ExpiresAt: expires, RefreshToken: secret.New(secrets[4])},
			NextRefresh: at.Add(10 * time.Minute),
		}, ev))
	}
	// c1: a first token, then a renewal 3 minutes before it expires.
	renew("c1", 0, t0, t0.Add(15*time.Minute), time.Time{}, secrets[2])
	second := t0.Add(12 * time.Minute)
	renew("c1", 1, second, second.Add(15*time.Minute), t0.Add(15*time.Minute), secrets[3])

	// c2: a 5xx, then the vendor refuses the client for good.
	_, err = st.Claim(ctx, "c2", 0, "w1", time.Minute)
	require.NoError(t, err)
	failed, err := events.New(events.TypeTokenRefreshFailed, portal, "c2", t0, events.TokenRefreshFailed{
		Vendor: portal, Credential: "c2", Class: vendors.ClassServer, Message: "503 from token endpoint",
		Attempt: 1, State: string(store.StateFailing), RetryAt: t0.Add(time.Second),
	})
	require.NoError(t, err)
	require.NoError(t, st.CommitFailure(ctx, "c2", "w1", 0, store.Failure{State: store.StateFailing,
		Class: vendors.ClassServer, Message: "503", RetryAt: t0.Add(time.Second)}, failed))
	_, err = st.Claim(ctx, "c2", 0, "w1", time.Minute)
	require.NoError(t, err)
	revoked, err := events.New(events.TypeKeyRevoked, portal, "c2", t0, events.KeyRevoked{
		Vendor: portal, Credential: "c2", Reason: events.ReasonRevokedByVendor, KeyFingerprint: "fp",
	})
	require.NoError(t, err)
	require.NoError(t, st.CommitFailure(ctx, "c2", "w1", 0, store.Failure{State: store.StateRevoked,
		Class: vendors.ClassRevoked, Message: "invalid_client"}, revoked))

	// c1: an operator revokes it.
	byOperator, err := events.New(events.TypeKeyRevoked, halaxy, "c1", t0, events.KeyRevoked{
		Vendor: halaxy, Credential: "c1", Generation: 2, Reason: events.ReasonRevokedByOperator, KeyFingerprint: "fp",
	})
	require.NoError(t, err)
	require.NoError(t, st.Revoke(ctx, "c1", 2, events.ReasonRevokedByOperator, "clinic left", byOperator))

	// The relay publishes the five events; its hook feeds the counters.
	reg := prometheus.NewRegistry()
	evm := metrics.NewEvents(metrics.EventsOptions{Vendors: []string{halaxy, portal}})
	creds, err := metrics.NewCredentials(metrics.CredentialsOptions{Store: st, Vendors: []string{halaxy, portal}, TTL: -1})
	require.NoError(t, err)
	reg.MustRegister(evm, creds, metrics.NewOutbox(rdb, prefix, nil))

	published := make(chan string, 16)
	relay, err := events.NewRelay(events.RelayOptions{Redis: rdb, Prefix: prefix, JetStream: js, SubjectPrefix: subjectPrefix, Logger: zerolog.New(zerolog.NewTestWriter(t)),
		OnPublished: func(env events.Envelope, lag time.Duration) { evm.Observe(env, lag); published <- env.ID }})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	for range 5 {
		select {
		case <-published:
		case <-time.After(30 * time.Second):
			t.Fatal("the relay did not publish the five events")
		}
	}
	require.Eventually(t, func() bool {
		n, err := events.NewOutbox(rdb, prefix).Depth(ctx)
		return err == nil && n == 0
	}, 10*time.Second, 20*time.Millisecond)

	sc := metricstest.Serve(t, metrics.Handler(reg))
	for _, s := range secrets {
		require.NotContains(t, sc.Body, s, "a secret is in the scrape")
	}

	require.Equal(t, 2.0, sc.Value(t, "tokenrelay_renewals_total", "vendor", halaxy))
	require.Equal(t, 0.0, sc.Value(t, "tokenrelay_renewals_total", "vendor", portal))
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_refresh_failures_total", "vendor", portal, "class", vendors.ClassServer))
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_refresh_failures_total", "vendor", portal, "class", vendors.ClassRevoked))
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_revocations_total", "vendor", portal, "reason", events.ReasonRevokedByVendor))
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_revocations_total", "vendor", halaxy, "reason", events.ReasonRevokedByOperator))
	require.Equal(t, 0.0, sc.Value(t, "tokenrelay_rotations_total", "vendor", halaxy))

	lead := sc.Metric(t, "tokenrelay_renewal_lead_time_seconds", "vendor", halaxy).GetHistogram()
	require.EqualValues(t, 1, lead.GetSampleCount(), "one renewal replaced a token")
	require.InDelta(t, 180, lead.GetSampleSum(), 0.001, "renewed 3 minutes before expiry")
	require.EqualValues(t, 5, sc.Metric(t, "tokenrelay_outbox_relay_delay_seconds").GetHistogram().GetSampleCount())

	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials", "vendor", halaxy, "state", "revoked"))
	require.Equal(t, 0.0, sc.Value(t, "tokenrelay_credentials", "vendor", halaxy, "state", "active"))
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_credentials", "vendor", portal, "state", "revoked"))
	require.Equal(t, float64(second.Add(15*time.Minute).Unix()), sc.Value(t, "tokenrelay_token_expiry_timestamp_seconds", "vendor", halaxy, "credential", "c1"))
	require.Equal(t, float64(second.Unix()), sc.Value(t, "tokenrelay_token_last_renewal_timestamp_seconds", "vendor", halaxy, "credential", "c1"))
	require.Nil(t, sc.Find("tokenrelay_token_expiry_timestamp_seconds", "credential", "c2"), "c2 never had a token")
	require.Equal(t, 0.0, sc.Value(t, "tokenrelay_credentials_scrape_error"))

	require.Equal(t, 0.0, sc.Value(t, "tokenrelay_outbox_depth"))
	require.Equal(t, 0.0, sc.Value(t, "tokenrelay_outbox_lag_seconds"))
}
