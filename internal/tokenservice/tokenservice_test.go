package tokenservice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
	"github.com/tokenrelay/tokenrelay/secret"
)

const (
	vendor     = "halaxy-au"
	credential = "clinic-42"
	wait       = 5 * time.Second
	tick       = 5 * time.Millisecond
)

var now = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// active is a credential with a valid token.
func active() store.Credential {
	return store.Credential{
		ID: credential, Vendor: vendor, State: store.StateActive, Generation: 7,
		Token: store.Token{AccessToken: secret.New("tok-7"), TokenType: "Bearer",
			IssuedAt: now.Add(-time.Minute), ExpiresAt: now.Add(14 * time.Minute),
			RefreshToken: secret.New("refresh-7")},
	}
}

// start runs a token service under a fresh prefix with read as its store.
func start(t *testing.T, nc *nats.Conn, prefix string, read tokenservice.TokenReaderFunc, opts tokenservice.Options) micro.Service {
	t.Helper()
	opts.SubjectPrefix = prefix
	opts.Reader = read
	if opts.Clock == nil {
		opts.Clock = clock
	}
	svc, err := tokenservice.New(nc, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	require.NoError(t, nc.Flush())
	return svc
}

func TestReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vendor  string // asked for; default vendor
		cred    func() store.Credential
		err     error
		want    client.TokenReply // Message is checked only when set
		wantErr error             // what the client makes of it
	}{
		{
			name: "token",
			cred: active,
			want: client.TokenReply{AccessToken: "tok-7", TokenType: "Bearer", ExpiresAt: now.Add(14 * time.Minute), Generation: 7},
		},
		{
			name: "refresh failing, token still valid",
			cred: func() store.Credential { c := active(); c.State = store.StateFailing; return c },
			want: client.TokenReply{AccessToken: "tok-7", TokenType: "Bearer", ExpiresAt: now.Add(14 * time.Minute), Generation: 7},
		},
		{
			name:    "unknown credential",
			err:     store.ErrNotFound,
			want:    client.TokenReply{Error: client.CodeNotFound, Message: "no credential halaxy-au/clinic-42"},
			wantErr: client.ErrNotFound,
		},
		{
			name:    "credential of another vendor",
			vendor:  "redox-prod",
			cred:    active,
			want:    client.TokenReply{Error: client.CodeNotFound, Message: "no credential redox-prod/clinic-42"},
			wantErr: client.ErrNotFound,
		},
		{
			name:    "revoked",
			cred:    func() store.Credential { c := active(); c.State = store.StateRevoked; return c },
			want:    client.TokenReply{Error: client.CodeRevoked},
			wantErr: client.ErrRevoked,
		},
		{
			name: "no token yet",
			cred: func() store.Credential {
				return store.Credential{ID: credential, Vendor: vendor, State: store.StateActive}
			},
			want:    client.TokenReply{Error: client.CodeUnavailable, Message: "no token yet"},
			wantErr: client.ErrUnavailable,
		},
		{
			name:    "expired by the clock",
			cred:    func() store.Credential { c := active(); c.Token.ExpiresAt = now; return c },
			want:    client.TokenReply{Error: client.CodeExpired},
			wantErr: client.ErrExpired,
		},
		{
			name:    "expired by state",
			cred:    func() store.Credential { c := active(); c.State = store.StateExpired; return c },
			want:    client.TokenReply{Error: client.CodeExpired},
			wantErr: client.ErrExpired,
		},
		{
			name:    "store down",
			err:     errors.New("dial tcp 10.0.0.7:6379: connection refused"),
			want:    client.TokenReply{Error: client.CodeUnavailable},
			wantErr: client.ErrUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nc, _, _ := testenv.NATS(t)
			prefix := testenv.Unique("t") + "."
			start(t, nc, prefix, func(ctx context.Context, id string) (store.Credential, error) {
				if tt.err != nil {
					return store.Credential{}, tt.err
				}
				if id != credential {
					return store.Credential{}, store.ErrNotFound
				}
				return tt.cred(), nil
			}, tokenservice.Options{})
			askVendor := vendor
			if tt.vendor != "" {
				askVendor = tt.vendor
			}

			// On the wire.
			msg, err := nc.Request(client.TokenSubject(prefix, askVendor, credential), nil, wait)
			require.NoError(t, err)
			var raw map[string]any
			require.NoError(t, json.Unmarshal(msg.Data, &raw))
			var got client.TokenReply
			require.NoError(t, json.Unmarshal(msg.Data, &got))
			if tt.want.Error != "" {
				require.Len(t, raw, 2, "an error reply is {error, message}: %s", msg.Data)
				require.Equal(t, tt.want.Error, got.Error)
				require.NotEmpty(t, got.Message)
				if tt.want.Message != "" {
					require.Equal(t, tt.want.Message, got.Message)
				}
				require.NotContains(t, string(msg.Data), "10.0.0.7", "internals leak")
				require.NotContains(t, string(msg.Data), "tok-7")
			} else {
				require.Len(t, raw, 4, "a token reply is {access_token, token_type, expires_at, generation}: %s", msg.Data)
				require.True(t, tt.want.ExpiresAt.Equal(got.ExpiresAt))
				got.ExpiresAt = tt.want.ExpiresAt
				require.Equal(t, tt.want, got)
			}
			require.NotContains(t, string(msg.Data), "refresh-7")

			// Through the client.
			ts, err := client.NewTokenSource(nc, askVendor, credential,
				client.WithSubjectPrefix(prefix), client.WithClock(clock))
			require.NoError(t, err)
			t.Cleanup(func() { _ = ts.Close() })
			tok, err := ts.Token()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Nil(t, tok)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "tok-7", tok.AccessToken)
		})
	}
}

func TestQueueGroupAnswersEachRequestOnce(t *testing.T) {
	t.Parallel()
	prefix := testenv.Unique("t") + "."
	var calls [2]atomic.Int64
	var services [2]micro.Service
	for i := range services {
		nc, _, _ := testenv.NATS(t) // each replica has its own connection
		services[i] = start(t, nc, prefix, func(context.Context, string) (store.Credential, error) {
			calls[i].Add(1)
			return active(), nil
		}, tokenservice.Options{})
	}

	nc, _, _ := testenv.NATS(t)
	inbox := nats.NewInbox()
	replies, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	const requests = 40
	for range requests {
		require.NoError(t, nc.PublishRequest(client.TokenSubject(prefix, vendor, credential), inbox, nil))
	}
	for range requests {
		msg, err := replies.NextMsg(wait)
		require.NoError(t, err)
		var reply client.TokenReply
		require.NoError(t, json.Unmarshal(msg.Data, &reply))
		require.Equal(t, "tok-7", reply.AccessToken)
	}
	// Both replicas have finished their requests; not one more reply.
	require.Eventually(t, func() bool {
		return services[0].Stats().Endpoints[0].NumRequests+services[1].Stats().Endpoints[0].NumRequests == requests
	}, wait, tick)
	// Requests for one credential arriving while its read is in flight
	// share that read.
	reads := calls[0].Load() + calls[1].Load()
	require.Positive(t, reads)
	require.LessOrEqual(t, reads, int64(requests))
	require.NoError(t, nc.Flush())
	_, err = replies.NextMsg(50 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout)
}

func TestPrefixKeepsTenantsApart(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("acme.eu.t") + "." // a prefix with dots
	var calls atomic.Int64
	start(t, nc, prefix, func(_ context.Context, id string) (store.Credential, error) {
		calls.Add(1)
		return active(), nil
	}, tokenservice.Options{})

	msg, err := nc.Request(client.TokenSubject(prefix, vendor, credential), nil, wait)
	require.NoError(t, err)
	var reply client.TokenReply
	require.NoError(t, json.Unmarshal(msg.Data, &reply))
	require.Equal(t, "tok-7", reply.AccessToken)

	// Another tenant's prefix reaches nobody here.
	other := testenv.Unique("acme.us.t") + "."
	_, err = nc.Request(client.TokenSubject(other, vendor, credential), nil, wait)
	require.ErrorIs(t, err, nats.ErrNoResponders)
	require.EqualValues(t, 1, calls.Load())
}

func TestServiceIdentity(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	svc := start(t, nc, prefix, func(context.Context, string) (store.Credential, error) {
		return active(), nil
	}, tokenservice.Options{})

	info := svc.Info()
	require.Equal(t, "tokenrelay-tokens", info.Name)
	require.Equal(t, "1.0.0", info.Version)
	require.Len(t, info.Endpoints, 1)
	require.Equal(t, prefix+"token.get.*.*", info.Endpoints[0].Subject)
	require.Equal(t, "tokenrelay-workers", info.Endpoints[0].QueueGroup)

	svc2 := start(t, nc, testenv.Unique("t")+".", func(context.Context, string) (store.Credential, error) {
		return active(), nil
	}, tokenservice.Options{QueueGroup: "tenant-a-workers"})
	require.Equal(t, "tenant-a-workers", svc2.Info().Endpoints[0].QueueGroup)
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	read := tokenservice.TokenReaderFunc(func(context.Context, string) (store.Credential, error) {
		return store.Credential{}, store.ErrNotFound
	})
	_, err := tokenservice.New(nil, tokenservice.Options{Reader: read})
	require.Error(t, err)
	_, err = tokenservice.New(nc, tokenservice.Options{})
	require.ErrorContains(t, err, "Reader")
	_, err = tokenservice.New(nc, tokenservice.Options{Reader: read, SubjectPrefix: "t.*."})
	require.ErrorContains(t, err, "SubjectPrefix")
}

func TestLogsNeverHoldTheToken(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	var logs testenv.Buffer // safe for the handler goroutine and the test
	start(t, nc, prefix, func(context.Context, string) (store.Credential, error) {
		return active(), nil
	}, tokenservice.Options{Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})

	_, err := nc.Request(client.TokenSubject(prefix, vendor, credential), nil, wait)
	require.NoError(t, err)
	_, err = nc.Request(client.TokenSubject(prefix, "redox-prod", credential), nil, wait)
	require.NoError(t, err)

	require.Eventually(t, func() bool { return bytes.Count([]byte(logs.String()), []byte("\n")) == 2 }, wait, tick)
	out := logs.String()
	require.NotContains(t, out, "tok-7")
	require.NotContains(t, out, "refresh-7")
	require.Contains(t, out, `"vendor":"halaxy-au"`)
	require.Contains(t, out, `"credential":"clinic-42"`)
	require.Contains(t, out, `"generation":7`)
	require.Contains(t, out, `"outcome":"token"`)
	require.Contains(t, out, `"outcome":"not_found"`)
}
