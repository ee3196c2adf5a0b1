package events_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestRelayPublishesInOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	creds := []string{"clinic-1", "clinic-2", "clinic-3"}

	// A backlog written before any relay runs, then more while it runs.
	sent := renewals(t, creds, 1, 40)
	require.NoError(t, b.outbox.Append(ctx, sent...))

	var (
		mu   sync.Mutex
		lags = map[string]time.Duration{}
	)
	opts := b.relayOptions(t)
	opts.BatchSize = 16 // several batches
	opts.OnPublished = func(env events.Envelope, lag time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		lags[env.ID] = lag
	}
	relay := startRelay(t, opts)

	for i := range 10 {
		more := renewals(t, creds, 41+5*i, 5)
		require.NoError(t, b.outbox.Append(ctx, more...))
		sent = append(sent, more...)
	}

	requireDelivered(t, b, b.stream, sent)
	require.True(t, relay.Active())
	depth, err := relay.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, depth)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, lags, len(sent), "OnPublished is called once per event")
	for _, env := range sent {
		lag, ok := lags[env.ID]
		require.True(t, ok, "no OnPublished for %s", env.ID)
		require.Less(t, lag, 30*time.Second)
		require.Greater(t, lag, -time.Second) // Redis and this host share a clock here
	}
}

func TestRelayRepublishIsDeduplicated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	published := make(chan string, 10)
	opts := b.relayOptions(t)
	opts.OnPublished = func(env events.Envelope, _ time.Duration) { published <- env.ID }
	startRelay(t, opts)

	env := renewal(t, "halaxy-au", "clinic-1", 1)
	require.NoError(t, b.outbox.Append(ctx, env))
	require.Equal(t, env.ID, receive(t, published))

	// The same event again, as after a crash between PubAck and XDEL.
	require.NoError(t, b.outbox.Append(ctx, env))
	require.Equal(t, env.ID, receive(t, published))

	requireDelivered(t, b, b.stream, []events.Envelope{env})
}

// Two relays on one outbox: one is active at a time, and when it stops the
// other takes over; every event is stored once, in order.
func TestTwoRelaysDeliverEachEventOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	creds := []string{"clinic-1", "clinic-2", "clinic-3", "clinic-4"}
	r1 := startRelay(t, b.relayOptions(t))
	r2 := startRelay(t, b.relayOptions(t))

	require.Eventually(t, func() bool { return r1.Active() || r2.Active() }, 10*time.Second, 10*time.Millisecond)
	require.False(t, r1.Active() && r2.Active(), "two relays active at once")

	var sent []events.Envelope
	appendSome := func(from int) {
		for i := range 10 {
			more := renewals(t, creds, from+10*i, 10)
			require.NoError(t, b.outbox.Append(ctx, more...))
			sent = append(sent, more...)
		}
	}
	appendSome(1)
	require.Eventually(t, func() bool { return streamMsgs(t, b.stream) > 0 }, 10*time.Second, 10*time.Millisecond)

	// Stop the active one while events are still coming.
	active, standby := r1, r2
	if r2.Active() {
		active, standby = r2, r1
	}
	active.stop(t)
	appendSome(101)
	require.Eventually(t, standby.Active, 10*time.Second, 10*time.Millisecond, "the standby did not take over")

	requireDelivered(t, b, b.stream, sent)
}

func TestRelayStopsWhenLeaseIsLost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	relay := startRelay(t, b.relayOptions(t))
	require.Eventually(t, relay.Active, 10*time.Second, 10*time.Millisecond)

	// Another owner takes the lease (as if this relay had stalled past it).
	leaseKey := events.RelayLeaseKey(b.prefix)
	require.NoError(t, b.rdb.Set(ctx, leaseKey, "intruder", time.Minute).Err())
	require.Eventually(t, func() bool { return !relay.Active() }, 10*time.Second, 10*time.Millisecond)

	env := renewal(t, "halaxy-au", "clinic-1", 1)
	require.NoError(t, b.outbox.Append(ctx, env))
	depth, err := relay.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, depth)
	require.Equal(t, "intruder", b.rdb.Get(ctx, leaseKey).Val(), "a standby must not touch a held lease")

	// Once the intruder is gone, the relay takes over and delivers.
	require.NoError(t, b.rdb.Del(ctx, leaseKey).Err())
	requireDelivered(t, b, b.stream, []events.Envelope{env})
	require.True(t, relay.Active())
}

func TestRelayReleasesLeaseOnStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	relay := startRelay(t, b.relayOptions(t))
	require.Eventually(t, relay.Active, 10*time.Second, 10*time.Millisecond)
	leaseKey := events.RelayLeaseKey(b.prefix)
	require.NotEmpty(t, b.rdb.Get(t.Context(), leaseKey).Val())

	relay.stop(t)
	require.False(t, relay.Active())
	require.ErrorIs(t, b.rdb.Get(t.Context(), leaseKey).Err(), redis.Nil, "the lease outlived Run")
}

func TestRelayDeadLettersMalformedEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	key := b.outbox.Key()
	xadd := func(values ...any) string {
		id, err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: values}).Result()
		require.NoError(t, err)
		return id
	}

	first := renewal(t, "halaxy-au", "clinic-1", 1)
	require.NoError(t, b.outbox.Append(ctx, first))
	noEvent := xadd(events.OutboxFieldID, "e-1", events.OutboxFieldSubject, "token.renewed.v.c")
	badSubject := xadd(events.OutboxFieldID, "e-2", events.OutboxFieldSubject, "token.get.v.c", events.OutboxFieldEvent, "{}")
	notJSON := xadd(events.OutboxFieldID, "e-3", events.OutboxFieldSubject, "token.renewed.v.c", events.OutboxFieldEvent, "secret-ish{")
	second := renewal(t, "halaxy-au", "clinic-1", 2)
	require.NoError(t, b.outbox.Append(ctx, second))

	startRelay(t, b.relayOptions(t))
	requireDelivered(t, b, b.stream, []events.Envelope{first, second})

	dead, err := b.rdb.XRange(ctx, events.DeadLetterKey(b.prefix), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, dead, 3)
	want := []struct{ outboxID, reason, id string }{
		{noEvent, "missing field event", "e-1"},
		{badSubject, "subject is not an event subject", "e-2"},
		{notJSON, "event is not JSON", "e-3"},
	}
	for i, w := range want {
		require.Equal(t, w.outboxID, dead[i].Values[events.DeadFieldOutboxID])
		require.Equal(t, w.reason, dead[i].Values[events.DeadFieldReason])
		require.Equal(t, w.id, dead[i].Values[events.OutboxFieldID], "the original fields are kept")
	}
}

func TestNewRelayChecksOptions(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisPrefix(t)
	js := newJetStream(t, testenv.NATSURL())
	tests := []struct {
		name string
		opts events.RelayOptions
		want string
	}{
		{"no redis", events.RelayOptions{JetStream: js}, "Redis"},
		{"no jetstream", events.RelayOptions{Redis: rdb}, "JetStream"},
		{"negative batch", events.RelayOptions{Redis: rdb, JetStream: js, BatchSize: -1}, "BatchSize"},
		{"negative lease", events.RelayOptions{Redis: rdb, JetStream: js, LeaseTTL: -time.Second}, "LeaseTTL"},
		{"tiny lease", events.RelayOptions{Redis: rdb, JetStream: js, LeaseTTL: time.Microsecond}, "LeaseTTL"},
		{"negative block", events.RelayOptions{Redis: rdb, JetStream: js, Block: -time.Second}, "Block"},
		{"bad subject prefix", events.RelayOptions{Redis: rdb, JetStream: js, SubjectPrefix: "t"}, "SubjectPrefix"},
	}
	for _, tt := range tests {
		_, err := events.NewRelay(tt.opts)
		require.ErrorContains(t, err, tt.want, tt.name)
	}
	relay, err := events.NewRelay(events.RelayOptions{Redis: rdb, Prefix: prefix, JetStream: js})
	require.NoError(t, err)
	require.False(t, relay.Active())
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received in 10s")
		panic("unreachable")
	}
}

func TestRelayRunEndsWhenConnectionCloses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := b.relayOptions(t)
	relay, err := events.NewRelay(opts)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- relay.Run(t.Context()) }()
	require.Eventually(t, relay.Active, 10*time.Second, 10*time.Millisecond)

	opts.JetStream.Conn().Close()
	err = receive(t, done)
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
	require.False(t, relay.Active())
	require.ErrorIs(t, b.rdb.Get(context.Background(), events.RelayLeaseKey(b.prefix)).Err(), redis.Nil,
		"a relay that cannot publish must hand the lease over")
}
