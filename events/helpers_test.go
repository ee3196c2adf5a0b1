package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// bundle is what most tests need: an outbox under a unique Redis prefix and
// an event stream with a unique name and subject prefix on the shared NATS.
type bundle struct {
	rdb           *redis.Client
	prefix        string
	js            jetstream.JetStream
	streamName    string
	subjectPrefix string
	stream        jetstream.Stream
	outbox        *events.Outbox
}

func setup(t testing.TB) *bundle {
	t.Helper()
	rdb, prefix := testenv.RedisPrefix(t)
	_, js, name := testenv.NATS(t)
	b := &bundle{
		rdb:           rdb,
		prefix:        prefix,
		js:            js,
		streamName:    name,
		subjectPrefix: testenv.Unique("t") + ".",
		outbox:        events.NewOutbox(rdb, prefix),
	}
	stream, err := events.EnsureStream(t.Context(), js, events.StreamConfig{
		Name: name, SubjectPrefix: b.subjectPrefix, Storage: jetstream.MemoryStorage,
	})
	require.NoError(t, err)
	b.stream = stream
	return b
}

// relayOptions are options for a relay on the bundle's outbox and stream,
// publishing over a connection of its own (as each scheduler replica has).
func (b *bundle) relayOptions(t testing.TB) events.RelayOptions {
	t.Helper()
	return events.RelayOptions{
		Redis:         b.rdb,
		Prefix:        b.prefix,
		JetStream:     newJetStream(t, testenv.NATSURL()),
		SubjectPrefix: b.subjectPrefix,
		Logger:        testLogger(t),
		LeaseTTL:      time.Second,
		Block:         200 * time.Millisecond,
	}
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Logger()
}

// newJetStream connects as the relay's callers should: never give up
// reconnecting.
func newJetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// runningRelay is a relay whose Run goroutine the test controls.
type runningRelay struct {
	*events.Relay
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop ends Run and waits for it to return.
func (r *runningRelay) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			require.NoError(t, err, "Run returned an error")
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancellation")
		}
	})
}

func startRelay(t testing.TB, opts events.RelayOptions) *runningRelay {
	t.Helper()
	relay, err := events.NewRelay(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningRelay{Relay: relay, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- relay.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// renewal builds the n-th token.renewed event of a credential.
func renewal(t testing.TB, vendor, credential string, n int) events.Envelope {
	t.Helper()
	env, err := events.New(events.TypeTokenRenewed, vendor, credential, time.Now(), events.TokenRenewed{
		Vendor: vendor, Credential: credential, Generation: int64(n), Fingerprint: "fp-" + strconv.Itoa(n),
	})
	require.NoError(t, err)
	return env
}

// renewals builds n events for each credential, interleaved: c0#1, c1#1,
// ..., c0#2, ...
func renewals(t testing.TB, credentials []string, from, n int) []events.Envelope {
	var envs []events.Envelope
	for i := from; i < from+n; i++ {
		for _, c := range credentials {
			envs = append(envs, renewal(t, "halaxy-au", c, i))
		}
	}
	return envs
}

// stored is one message of the stream.
type stored struct {
	seq     uint64
	subject string
	msgID   string
	env     events.Envelope
}

// readStream returns every message in the stream in sequence order.
func readStream(t testing.TB, stream jetstream.Stream) []stored {
	t.Helper()
	ctx := t.Context()
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	var out []stored
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		s := stored{seq: m.Sequence, subject: m.Subject, msgID: m.Header.Get(jetstream.MsgIDHeader)}
		require.NoError(t, json.Unmarshal(m.Data, &s.env), "message %d", seq)
		out = append(out, s)
	}
	return out
}

func streamMsgs(t testing.TB, stream jetstream.Stream) uint64 {
	info, err := stream.Info(t.Context())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// requireDelivered waits until the outbox is empty and the stream holds as
// many messages as were sent, then checks that each event is there exactly
// once, with Nats-Msg-Id = event id, on the prefixed subject, and that the
// events of each credential are in the order they were appended.
func requireDelivered(t *testing.T, b *bundle, stream jetstream.Stream, sent []events.Envelope) []stored {
	t.Helper()
	require.Eventually(t, func() bool {
		depth, err := b.outbox.Depth(t.Context())
		return err == nil && depth == 0 && streamMsgs(t, stream) >= uint64(len(sent))
	}, 30*time.Second, 20*time.Millisecond, "events did not all reach the stream")

	got := readStream(t, stream)
	require.Len(t, got, len(sent), "the stream holds a different number of events than were sent")
	byID := make(map[string]events.Envelope, len(sent))
	for _, env := range sent {
		byID[env.ID] = env
	}
	seen := make(map[string]bool, len(got))
	lastGen := make(map[string]int64)
	for _, m := range got {
		require.False(t, seen[m.msgID], "event %s stored twice", m.msgID)
		seen[m.msgID] = true
		want, ok := byID[m.msgID]
		require.True(t, ok, "unexpected event %s", m.msgID)
		require.Equal(t, want.ID, m.env.ID)
		require.Equal(t, b.subjectPrefix+want.Subject, m.subject)
		var data events.TokenRenewed
		require.NoError(t, json.Unmarshal(m.env.Data, &data))
		require.Greater(t, data.Generation, lastGen[data.Credential],
			"events of %s out of order at stream sequence %d", data.Credential, m.seq)
		lastGen[data.Credential] = data.Generation
	}
	return got
}

// freePort returns a TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
