package tokenservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
	"github.com/tokenrelay/tokenrelay/secret"
)

var errStoreDown = errors.New("dial tcp 10.0.0.7:6379: connection refused")

// fakeStore is a TokenReader that can be taken down or made to stall.
type fakeStore struct {
	mu    sync.Mutex
	creds map[string]store.Credential
	err   error         // the store is down
	stall chan struct{} // non-nil: reads wait for it to close (or their deadline)
	reads int
}

func newFakeStore(creds ...store.Credential) *fakeStore {
	s := &fakeStore{creds: make(map[string]store.Credential)}
	for _, c := range creds {
		s.creds[c.ID] = c
	}
	return s
}

func (s *fakeStore) CurrentToken(ctx context.Context, id string) (store.Credential, error) {
	s.mu.Lock()
	s.reads++
	stall, err := s.stall, s.err
	c, ok := s.creds[id]
	s.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return store.Credential{}, ctx.Err()
		}
	}
	switch {
	case err != nil:
		return store.Credential{}, err
	case !ok:
		return store.Credential{}, store.ErrNotFound
	}
	return c, nil
}

func (s *fakeStore) set(f func(s *fakeStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *fakeStore) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// credentialWith is active() for another id, generation and token.
func credentialWith(id string, gen int64, token string) store.Credential {
	c := active()
	c.ID, c.Generation, c.Token.AccessToken = id, gen, secret.New(token)
	return c
}

// ask requests the token of id and decodes the reply.
func ask(t *testing.T, nc *nats.Conn, prefix, id string) client.TokenReply {
	t.Helper()
	msg, err := nc.Request(client.TokenSubject(prefix, vendor, id), nil, wait)
	require.NoError(t, err)
	var reply client.TokenReply
	require.NoError(t, json.Unmarshal(msg.Data, &reply))
	return reply
}

// code is the error code of the reply for id ("" for a token, "no reply"
// when none came), for conditions polled by require.Eventually.
func code(nc *nats.Conn, prefix, id string) string {
	msg, err := nc.Request(client.TokenSubject(prefix, vendor, id), nil, wait)
	if err != nil {
		return "no reply"
	}
	var reply client.TokenReply
	if json.Unmarshal(msg.Data, &reply) != nil {
		return "bad reply"
	}
	return reply.Error
}

// publish sends an event as the relay would (a plain publish reaches the
// same subscribers as one to the stream).
func publish(t *testing.T, nc *nats.Conn, prefix, typ, id string, data any) {
	t.Helper()
	env, err := events.New(typ, vendor, id, now, data)
	require.NoError(t, err)
	body, err := json.Marshal(env)
	require.NoError(t, err)
	require.NoError(t, nc.Publish(prefix+env.Subject, body))
	require.NoError(t, nc.Flush())
}

// served starts a token service on a fake store holding active() and has
// it serve that credential's token once, so that the token is cached.
func served(t *testing.T, opts tokenservice.Options) (*nats.Conn, string, *fakeStore) {
	t.Helper()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	fake := newFakeStore(active())
	start(t, nc, prefix, fake.CurrentToken, opts)
	require.Equal(t, "tok-7", ask(t, nc, prefix, credential).AccessToken)
	return nc, prefix, fake
}

func TestServesCachedTokenWhileStoreIsDown(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		down  func(s *fakeStore)
		cache int
		want  string // access token, or the error code
	}{
		{name: "store failing", down: func(s *fakeStore) { s.err = errStoreDown }, want: "tok-7"},
		{name: "store stalled", down: func(s *fakeStore) { s.stall = make(chan struct{}) }, want: "tok-7"},
		{name: "without the cache", cache: -1, down: func(s *fakeStore) { s.err = errStoreDown }, want: client.CodeUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs testenv.Buffer
			nc, prefix, fake := served(t, tokenservice.Options{
				CacheSize: tt.cache, ReadTimeout: 3 * time.Second,
				Logger: zerolog.New(&logs).Level(zerolog.DebugLevel),
			})

			fake.set(tt.down)
			began := time.Now()
			reply := ask(t, nc, prefix, credential)
			if tt.want == "tok-7" {
				require.Equal(t, client.TokenReply{AccessToken: "tok-7", TokenType: "Bearer", ExpiresAt: now.Add(14 * time.Minute), Generation: 7}, reply)
				require.Less(t, time.Since(began), 2*time.Second, "a stalled store is not waited for")
			} else {
				require.Equal(t, tt.want, reply.Error)
			}
			require.NotContains(t, logs.String(), "tok-7")
		})
	}
}

func TestCacheNeverServesAnExpiredToken(t *testing.T) {
	t.Parallel()
	clk := testenv.NewClock(now)
	nc, prefix, fake := served(t, tokenservice.Options{Clock: clk.Now})

	fake.set(func(s *fakeStore) { s.err = errStoreDown })
	clk.Advance(14*time.Minute - time.Second)
	require.Equal(t, "tok-7", ask(t, nc, prefix, credential).AccessToken)
	clk.Advance(time.Second) // the token's expiry
	reply := ask(t, nc, prefix, credential)
	require.Empty(t, reply.AccessToken)
	require.Equal(t, client.CodeUnavailable, reply.Error)
}

func TestKeyRevokedDropsTheCachedToken(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		reason string
		want   string
	}{
		{events.ReasonRevokedByVendor, client.CodeRevoked},
		{events.ReasonRevokedByOperator, client.CodeRevoked},
		{events.ReasonRotated, client.CodeUnavailable}, // the credential goes on with its new key
	} {
		t.Run(tt.reason, func(t *testing.T) {
			t.Parallel()
			nc, prefix, fake := served(t, tokenservice.Options{})

			fake.set(func(s *fakeStore) { s.err = errStoreDown })
			publish(t, nc, prefix, events.TypeKeyRevoked, credential, events.KeyRevoked{
				Vendor: vendor, Credential: credential, Generation: 7, Reason: tt.reason, KeyFingerprint: "fp",
			})
			require.Eventually(t, func() bool {
				return code(nc, prefix, credential) == tt.want
			}, wait, tick)
			require.Empty(t, ask(t, nc, prefix, credential).AccessToken)
		})
	}
}

func TestRenewalReplacesTheCachedToken(t *testing.T) {
	t.Parallel()
	nc, prefix, fake := served(t, tokenservice.Options{})

	// A renewal while the store is up: the next answer, and the cache,
	// hold the new token (the service reads it when told of the renewal).
	fake.set(func(s *fakeStore) { s.creds[credential] = credentialWith(credential, 8, "tok-8") })
	reads := fake.readCount()
	publish(t, nc, prefix, events.TypeTokenRenewed, credential, events.TokenRenewed{
		Vendor: vendor, Credential: credential, Generation: 8, ExpiresAt: now.Add(14 * time.Minute),
	})
	require.Eventually(t, func() bool { return fake.readCount() > reads }, wait, tick)
	require.Equal(t, "tok-8", ask(t, nc, prefix, credential).AccessToken)
	fake.set(func(s *fakeStore) { s.err = errStoreDown })
	require.Equal(t, int64(8), ask(t, nc, prefix, credential).Generation)

	// A renewal heard while the store is down: the cached token is no
	// longer the current one and is not served.
	publish(t, nc, prefix, events.TypeTokenRenewed, credential, events.TokenRenewed{
		Vendor: vendor, Credential: credential, Generation: 9, ExpiresAt: now.Add(14 * time.Minute),
	})
	require.Eventually(t, func() bool {
		return code(nc, prefix, credential) == client.CodeUnavailable
	}, wait, tick)
}

// A read that hangs for one credential does not hold up the others.
func TestSlowReadDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	release, reading := make(chan struct{}), make(chan struct{})
	fast := credentialWith("fast", 3, "tok-fast")
	start(t, nc, prefix, func(ctx context.Context, id string) (store.Credential, error) {
		if id == fast.ID {
			return fast, nil
		}
		close(reading)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return store.Credential{}, errStoreDown
	}, tokenservice.Options{ReadTimeout: time.Minute})

	slow := make(chan error, 1)
	go func() {
		_, err := nc.Request(client.TokenSubject(prefix, vendor, "slow"), nil, time.Minute)
		slow <- err
	}()
	<-reading
	msg, err := nc.Request(client.TokenSubject(prefix, vendor, fast.ID), nil, 2*time.Second)
	require.NoError(t, err, "the fast credential waited for the slow one")
	require.Contains(t, string(msg.Data), "tok-fast")
	require.Empty(t, slow, "the slow read was released")
	close(release)
	require.NoError(t, <-slow)
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	fake := newFakeStore(credentialWith("a", 1, "tok-a"), credentialWith("b", 1, "tok-b"), credentialWith("c", 1, "tok-c"))
	start(t, nc, prefix, fake.CurrentToken, tokenservice.Options{CacheSize: 2})
	for _, id := range []string{"a", "b", "c"} {
		require.Equal(t, "tok-"+id, ask(t, nc, prefix, id).AccessToken)
	}
	fake.set(func(s *fakeStore) { s.err = errStoreDown })
	require.Equal(t, client.CodeUnavailable, ask(t, nc, prefix, "a").Error, "the least recently asked went first")
	require.Equal(t, "tok-b", ask(t, nc, prefix, "b").AccessToken)
	require.Equal(t, "tok-c", ask(t, nc, prefix, "c").AccessToken)
}

// Once a read has outlasted StallTimeout, the store is taken to be down:
// cached tokens are answered at once, not after another StallTimeout, until
// a read succeeds again.
func TestStalledStoreIsNotWaitedForTwice(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	fake := newFakeStore(active(), credentialWith("other", 2, "tok-other"))
	start(t, nc, prefix, fake.CurrentToken, tokenservice.Options{StallTimeout: time.Second, ReadTimeout: time.Minute})
	require.Equal(t, "tok-7", ask(t, nc, prefix, credential).AccessToken)
	require.Equal(t, "tok-other", ask(t, nc, prefix, "other").AccessToken)

	stall := make(chan struct{})
	fake.set(func(s *fakeStore) { s.stall = stall })
	began := time.Now()
	require.Equal(t, "tok-7", ask(t, nc, prefix, credential).AccessToken)
	require.GreaterOrEqual(t, time.Since(began), time.Second, "the first request waits StallTimeout")
	began = time.Now()
	require.Equal(t, "tok-other", ask(t, nc, prefix, "other").AccessToken)
	require.Less(t, time.Since(began), 500*time.Millisecond, "the next is answered at once")

	fake.set(func(s *fakeStore) { s.stall = nil; s.creds["other"] = credentialWith("other", 3, "tok-3") })
	close(stall)
	require.Eventually(t, func() bool {
		return ask(t, nc, prefix, "other").Generation == 3
	}, wait, tick, "after the stall the store answers again")
}

// A NATS user that may not hear renewals and revocations gets no cache: it
// could not tell a replaced or revoked token from a current one.
func TestNoCacheWithoutTheEvents(t *testing.T) {
	t.Parallel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "worker", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"token.get.*.*", "$SRV.>", "_INBOX.>"}},
		}}}})
	require.NoError(t, err)
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	require.True(t, srv.ReadyForConnections(5*time.Second))
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("worker", "pw"))
	require.NoError(t, err)
	t.Cleanup(nc.Close)

	fake := newFakeStore(active())
	var logs testenv.Buffer
	start(t, nc, "", fake.CurrentToken, tokenservice.Options{Logger: zerolog.New(&logs)})
	require.Contains(t, logs.String(), "no token cache")
	require.Equal(t, "tok-7", ask(t, nc, "", credential).AccessToken)
	fake.set(func(s *fakeStore) { s.err = errStoreDown })
	require.Equal(t, client.CodeUnavailable, ask(t, nc, "", credential).Error)
}
