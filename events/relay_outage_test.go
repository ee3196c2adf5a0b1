package events_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// NATS goes away and comes back (same port, same store): what was written
// meanwhile waits in the outbox and every event is stored exactly once. The
// test runs its own server, never the shared one.
func TestRelaySurvivesNATSOutage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	port, storeDir := freePort(t), t.TempDir()
	var (
		mu  sync.Mutex
		srv *server.Server
	)
	start := func() {
		s, err := testenv.RunNATS(port, storeDir)
		require.NoError(t, err)
		mu.Lock()
		srv = s
		mu.Unlock()
	}
	stop := func() {
		mu.Lock()
		s := srv
		mu.Unlock()
		s.Shutdown()
		s.WaitForShutdown()
	}
	start()
	t.Cleanup(stop)

	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	js := newJetStream(t, url)
	b := &bundle{subjectPrefix: "", streamName: events.DefaultStreamName}
	b.rdb, b.prefix = testenv.RedisPrefix(t)
	b.outbox = events.NewOutbox(b.rdb, b.prefix)
	stream, err := events.EnsureStream(ctx, js, events.StreamConfig{}) // the production stream, on file storage
	require.NoError(t, err)
	b.stream = stream

	opts := events.RelayOptions{
		Redis: b.rdb, Prefix: b.prefix, JetStream: js, Logger: testLogger(t),
		LeaseTTL: time.Second, Block: 100 * time.Millisecond, AckTimeout: time.Second,
	}
	startRelay(t, opts)
	creds := []string{"clinic-1", "clinic-2"}

	// A writer appends steadily across the outage.
	var (
		sentMu sync.Mutex
		sent   []events.Envelope
	)
	appendBatch := func(from int) error {
		envs := renewals(t, creds, from, 1)
		if err := b.outbox.Append(ctx, envs...); err != nil {
			return err
		}
		sentMu.Lock()
		sent = append(sent, envs...)
		sentMu.Unlock()
		return nil
	}
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	var stopOnce sync.Once
	stopWriting := func() {
		stopOnce.Do(func() { close(stopWriter) })
		<-writerDone
	}
	t.Cleanup(stopWriting)
	go func() {
		defer close(writerDone)
		for n := 1; ; n++ {
			select {
			case <-stopWriter:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if err := appendBatch(n); err != nil {
				t.Errorf("append: %v", err)
				return
			}
		}
	}()
	waitStored := func(n uint64) {
		require.Eventually(t, func() bool { return streamMsgs(t, stream) >= n }, 20*time.Second, 10*time.Millisecond)
	}
	waitStored(50)

	stop()
	// While NATS is down, events wait in the outbox.
	require.Eventually(t, func() bool {
		depth, err := b.outbox.Depth(ctx)
		return err == nil && depth >= 200
	}, 20*time.Second, 10*time.Millisecond)

	start()
	stream, err = js.Stream(ctx, events.DefaultStreamName)
	require.NoError(t, err)
	b.stream = stream
	waitStored(400)
	stopWriting()

	sentMu.Lock()
	defer sentMu.Unlock()
	requireDelivered(t, b, stream, sent)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.FileStorage, info.Config.Storage)
}

// failoverHook plays a Redis failover to the relay's client: the first
// XDEL of published entries is answered but never reaches the outbox (the
// old master acknowledged it and died before its replica had it), and the
// next read of the outbox fails (the connection to the old master breaks).
type failoverHook struct {
	mu          sync.Mutex
	droppedXDel bool
	failedXRead bool
}

func (h *failoverHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *failoverHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		fail := cmd.Name() == "xread" && h.droppedXDel && !h.failedXRead
		h.failedXRead = h.failedXRead || fail
		h.mu.Unlock()
		if fail {
			err := errors.New("read tcp: connection reset by peer (a failover, played)")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *failoverHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		drop := !h.droppedXDel && len(cmds) > 0 && cmds[0].Name() == "xdel"
		h.droppedXDel = h.droppedXDel || drop
		h.mu.Unlock()
		if drop {
			return nil // answered, never applied
		}
		return next(ctx, cmds)
	}
}

func (h *failoverHook) played() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.droppedXDel && h.failedXRead
}

// A failover can bring back entries the relay had published and deleted
// (the new master never had the deletion) behind its read cursor: after a
// read error the relay reads the outbox from its start again, so they are
// deleted (and their republish is deduplicated), and the outbox drains.
func TestRelayRereadsTheOutboxAfterARedisError(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	hook := &failoverHook{}
	rdb := redis.NewClient(b.rdb.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(hook)
	opts := b.relayOptions(t)
	opts.Redis = rdb
	startRelay(t, opts)

	env := renewal(t, "halaxy-au", "clinic-1", 1)
	require.NoError(t, b.outbox.Append(ctx, env))
	require.Eventually(t, hook.played, 10*time.Second, 10*time.Millisecond, "the failover should be played")
	require.Eventually(t, func() bool {
		n, err := b.outbox.Depth(ctx)
		return err == nil && n == 0
	}, 10*time.Second, 20*time.Millisecond, "the outbox should drain after the failover")
	requireDelivered(t, b, b.stream, []events.Envelope{env})
}
