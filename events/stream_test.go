package events_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestStreamSubjects(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{
		"token.renewed.>", "token.refresh_failed.>", "token.expired.>",
		"key.rotated.>", "key.revoked.>", "webhook.>",
		"request.completed.>", "request.failed.>",
		"polling.started.>", "polling.stopped.>",
		"sync.page.>", "sync.completed.>", "sync.failed.>",
	}, events.StreamSubjects(""))
	require.NotContains(t, events.StreamSubjects(""), "sync.>", "sync.start is a request/reply subject")
	for _, s := range events.StreamSubjects("tenant-a.") {
		require.Regexp(t, `^tenant-a\.[a-z_.]+\.>$`, s)
	}
}

func TestEnsureStreamIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, js, name := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	cfg := events.StreamConfig{Name: name, SubjectPrefix: prefix, Storage: jetstream.MemoryStorage}

	first, err := events.EnsureStream(ctx, js, cfg)
	require.NoError(t, err)
	second, err := events.EnsureStream(ctx, js, cfg)
	require.NoError(t, err)

	for _, s := range []jetstream.Stream{first, second} {
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, name, info.Config.Name)
		require.Equal(t, events.StreamSubjects(prefix), info.Config.Subjects)
		require.Equal(t, 2*time.Minute, info.Config.Duplicates)
		require.Equal(t, 7*24*time.Hour, info.Config.MaxAge)
		require.Equal(t, 1, info.Config.Replicas)
		require.Equal(t, jetstream.MemoryStorage, info.Config.Storage)
	}
}

func TestEnsureStreamUpdatesSubjects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, js, name := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	// An older version of the stream that knew fewer event types.
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{prefix + "token.renewed.>"}, Storage: jetstream.MemoryStorage,
	})
	require.NoError(t, err)

	stream, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: name, SubjectPrefix: prefix, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, events.StreamSubjects(prefix), info.Config.Subjects)
}

// The stream must never capture a request/reply subject: it would answer
// the request with a PubAck, racing the real responder.
func TestEnsureStreamDoesNotCaptureRequests(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nc, js, name := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	stream, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: name, SubjectPrefix: prefix, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)

	for _, subject := range []string{"token.get.x.y", "request.submit"} {
		sub, err := nc.Subscribe(prefix+subject, func(m *nats.Msg) { _ = m.Respond([]byte("from the responder")) })
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		require.NoError(t, nc.Flush())

		for range 5 {
			reply, err := nc.Request(prefix+subject, []byte(`{}`), 5*time.Second)
			require.NoError(t, err)
			require.Equal(t, "from the responder", string(reply.Data), "a stream answered %s", subject)
		}
	}
	require.Zero(t, streamMsgs(t, stream), "the stream captured a request subject")

	// An event subject, by contrast, is captured.
	ack, err := js.Publish(ctx, prefix+"token.renewed.x.y", []byte(`{}`))
	require.NoError(t, err)
	require.Equal(t, name, ack.Stream)
	require.EqualValues(t, 1, streamMsgs(t, stream))
}

func TestEnsureStreamRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, js, name := testenv.NATS(t)
	tests := []struct {
		name string
		cfg  events.StreamConfig
		want string
	}{
		{"prefix without dot", events.StreamConfig{SubjectPrefix: "tenant"}, "SubjectPrefix"},
		{"prefix with wildcard", events.StreamConfig{SubjectPrefix: "*."}, "SubjectPrefix"},
		{"prefix with space", events.StreamConfig{SubjectPrefix: "a b."}, "SubjectPrefix"},
		{"prefix with empty token", events.StreamConfig{SubjectPrefix: "a..b."}, "SubjectPrefix"},
		{"window beyond age", events.StreamConfig{MaxAge: time.Minute, DuplicateWindow: time.Hour}, "DuplicateWindow"},
		{"negative replicas", events.StreamConfig{Replicas: -1}, "Replicas"},
	}
	for _, tt := range tests {
		tt.cfg.Name = name
		_, err := events.EnsureStream(t.Context(), js, tt.cfg)
		require.ErrorContains(t, err, tt.want, tt.name)
	}
}
