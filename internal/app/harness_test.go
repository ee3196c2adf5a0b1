package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/devmode"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// pipeline is one test's tokenrelay: a sandbox, a configuration on the real
// Redis (a DB of its own) and a NATS server (the shared one, or the test's
// own), and any number of scheduler and worker roles, each with its own
// connections as separate processes would have.
type pipeline struct {
	t       *testing.T
	cfg     *config.Config
	sandbox *sandbox.Sandbox
	sbURL   string
	logs    *testenv.Buffer // every log line of the run, for the secret grep
	log     zerolog.Logger
	inspect *app.Env // connections for the test's own reads
}

type role struct {
	addr   string // a worker's HTTP address
	cancel context.CancelFunc
	done   chan struct{} // closed when the role has returned
	err    error
}

// stop ends the role and waits for it.
func (r *role) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		require.NoError(t, r.err)
	case <-time.After(30 * time.Second):
		t.Fatal("role did not stop within 30s")
	}
}

func newPipeline(t *testing.T, credentials int, lifetime time.Duration, natsURL string) *pipeline {
	t.Helper()
	return newPipelineOn(t, testenv.RedisURL(t), credentials, lifetime, natsURL)
}

// newPipelineOn is newPipeline on the Redis at redisURL (a server of the
// test's own, which it may stop and start); configure, if given, changes
// the configuration before anything connects (a Sentinel, a Cluster).
func newPipelineOn(t *testing.T, redisURL string, credentials int, lifetime time.Duration, natsURL string,
	configure ...func(*config.Config)) *pipeline {
	t.Helper()
	sb := sandbox.New(sandbox.Options{RealTokenLifetime: lifetime})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	if natsURL == "" {
		natsURL = testenv.NATSURL()
	}
	cfg, err := devmode.Config(redisURL, natsURL, srv.URL, lifetime, credentials, sb)
	require.NoError(t, err)
	cfg.NATS.Stream = strings.ToUpper(testenv.Unique("T_"))
	cfg.NATS.SubjectPrefix = testenv.Unique("t") + "."
	cfg.Scheduler.ClaimLease = config.Duration(5 * time.Second)
	cfg.Worker.SpoolDir = t.TempDir() // shared by the pipeline's workers, as on one host
	for _, f := range configure {
		f(cfg)
	}
	logs := &testenv.Buffer{}
	p := &pipeline{t: t, cfg: cfg, sandbox: sb, sbURL: srv.URL, logs: logs,
		log: zerolog.New(logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()}
	p.inspect = p.connect()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.inspect.JS.DeleteStream(ctx, cfg.NATS.Stream)
	})
	return p
}

func (p *pipeline) connect() *app.Env {
	p.t.Helper()
	env, err := app.Connect(context.Background(), p.cfg, p.log)
	require.NoError(p.t, err)
	p.t.Cleanup(env.Close)
	return env
}

func (p *pipeline) start(run func(ctx context.Context, env *app.Env) error) *role {
	env := p.connect()
	ctx, cancel := context.WithCancel(context.Background())
	r := &role{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); r.err = run(ctx, env) }()
	// Registered after connect's, so it runs first: the role stops before
	// its connections close.
	p.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	return r
}

func (p *pipeline) scheduler() *role { return p.start(app.RunScheduler) }

func (p *pipeline) worker() *role {
	listening := make(chan string, 1)
	r := p.start(func(ctx context.Context, env *app.Env) error {
		return app.RunWorker(ctx, env, app.WorkerOptions{TaskCheckInterval: 20 * time.Millisecond,
			OnListen: func(a net.Addr) { listening <- a.String() }})
	})
	select {
	case r.addr = <-listening:
	case <-r.done:
		p.t.Fatalf("worker did not start: %v", r.err)
	}
	return r
}

// generations reads every credential's summary from the store.
func (p *pipeline) summaries() map[string]store.Summary {
	p.t.Helper()
	out := map[string]store.Summary{}
	err := p.inspect.Store.Scan(context.Background(), func(s store.Summary) error {
		out[s.ID] = s
		return nil
	})
	require.NoError(p.t, err)
	return out
}

// waitGenerations waits until every credential that is not revoked has
// reached at least gen.
func (p *pipeline) waitGenerations(gen int64, within time.Duration) {
	p.t.Helper()
	require.Eventually(p.t, func() bool {
		sums := p.summaries()
		if len(sums) != len(p.cfg.Credentials) {
			return false
		}
		for _, s := range sums {
			if s.State != store.StateRevoked && s.Generation < gen {
				return false
			}
		}
		return true
	}, within, 100*time.Millisecond, "every credential should reach generation %d", gen)
}

// waitOutboxEmpty waits until the relay has moved every event to JetStream.
func (p *pipeline) waitOutboxEmpty() {
	p.t.Helper()
	ob := events.NewOutbox(p.inspect.Redis, p.cfg.Redis.Prefix)
	require.Eventually(p.t, func() bool {
		n, err := ob.Depth(context.Background())
		return err == nil && n == 0
	}, 30*time.Second, 50*time.Millisecond, "the outbox should drain")
}

// streamEvent is one message of the stream.
type streamEvent struct {
	Env   events.Envelope
	MsgID string
	Raw   string
}

// readStream reads the whole stream in order.
func (p *pipeline) readStream(js jetstream.JetStream) []streamEvent {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, p.cfg.NATS.Stream)
	require.NoError(p.t, err)
	info, err := stream.Info(ctx)
	require.NoError(p.t, err)
	total := int(info.State.Msgs)
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(p.t, err)
	var out []streamEvent
	for len(out) < total {
		batch, err := cons.Fetch(min(total-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(p.t, err)
		got := 0
		for m := range batch.Messages() {
			got++
			var env events.Envelope
			require.NoError(p.t, json.Unmarshal(m.Data(), &env), "stream message is not an envelope")
			out = append(out, streamEvent{Env: env, MsgID: m.Headers().Get(nats.MsgIdHdr), Raw: string(m.Data())})
		}
		require.NoError(p.t, batch.Error())
		require.NotZero(p.t, got, "stream stopped short: %d of %d", len(out), total)
	}
	return out
}

// checkRenewals asserts, from the stream, exactly one valid token.renewed
// per generation of every credential, in increasing order, with the
// envelope id as Nats-Msg-Id and no id twice.
func (p *pipeline) checkRenewals(evs []streamEvent, sums map[string]store.Summary) {
	p.t.Helper()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, e := range evs {
		require.NoError(p.t, e.Env.Validate())
		require.Equal(p.t, e.Env.ID, e.MsgID, "Nats-Msg-Id must be the event id")
		require.False(p.t, seen[e.Env.ID], "event %s published twice", e.Env.ID)
		seen[e.Env.ID] = true
		if e.Env.Type != events.TypeTokenRenewed {
			continue
		}
		var d events.TokenRenewed
		require.NoError(p.t, json.Unmarshal(e.Env.Data, &d))
		require.Equal(p.t, events.NATSSubject(events.TypeTokenRenewed, d.Vendor, d.Credential), e.Env.Subject)
		require.Equal(p.t, last[d.Credential]+1, d.Generation, "renewals of %s out of order or missing", d.Credential)
		last[d.Credential] = d.Generation
	}
	for id, s := range sums {
		require.Equal(p.t, s.Generation, last[id], "credential %s: %d renewals in the store, %d token.renewed events", id, s.Generation, last[id])
	}
}

// useTokens keeps fetching every credential's token through the client
// path (NATS token.get) and using it on the sandbox's FHIR API, until ctx
// ends; the sandbox counts any use of an expired or unknown token.
// explainExpiredUses describes the sandbox's last expired uses, each with
// its credential's token calls and renewal events around it, so that a
// failure says whether a renewal came late or a user held a token too long.
func (p *pipeline) explainExpiredUses(evs []streamEvent) string {
	byClient := map[string]string{}
	for _, c := range p.cfg.Credentials {
		byClient[c.ClientID] = c.ID
	}
	var b strings.Builder
	for _, u := range p.sandbox.ExpiredUseLog() {
		id := byClient[u.ClientID]
		fmt.Fprintf(&b, "%s: used %s after its token expired, at %s\n", id, u.Late, u.At.Format("15:04:05.000"))
		for _, at := range p.sandbox.TokenCallTimes(u.ClientID) {
			if d := u.At.Sub(at); d > -5*time.Second && d < 10*time.Second {
				fmt.Fprintf(&b, "  token call at %s\n", at.Format("15:04:05.000"))
			}
		}
		for _, e := range evs {
			if e.Env.Subject == "" || !strings.HasSuffix(e.Env.Subject, "."+id) {
				continue
			}
			if d := u.At.Sub(e.Env.Time); d > -5*time.Second && d < 10*time.Second {
				fmt.Fprintf(&b, "  %s at %s: %s\n", e.Env.Type, e.Env.Time.Format("15:04:05.000"), e.Env.Data)
			}
		}
	}
	return b.String()
}

// usePace is how often each user of useTokens sends a request.
const usePace = 5 * time.Millisecond

// users are useTokens' goroutines; Wait for them, then read Accepted: how
// many requests the sandbox answered 200.
type users struct {
	sync.WaitGroup
	Accepted atomic.Int64

	mu     sync.Mutex
	errors map[string]int // token errors by message, for a failure's report
}

func (u *users) noteError(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.errors == nil {
		u.errors = map[string]int{}
	}
	msg := err.Error()
	if len(msg) > 60 {
		msg = msg[:60]
	}
	u.errors[msg]++
}

// Errors are the token errors the users met, counted by message.
func (u *users) Errors() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return maps.Clone(u.errors)
}

func (p *pipeline) useTokens(ctx context.Context, nc *nats.Conn, goroutines int) *users {
	var wg users
	creds := p.cfg.Credentials
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := testenv.HTTPClient()
			sources := map[string]*client.TokenSource{}
			defer func() {
				for _, ts := range sources {
					ts.Close()
				}
			}()
			// A service sends a request now and then, not in a tight loop:
			// each user sends one every usePace, so that the pipeline under
			// test is not starved of CPU by its own load generator (each
			// credential's token is still used several times a second).
			pace := time.NewTicker(usePace)
			defer pace.Stop()
			for i := g; ctx.Err() == nil; i = (i + goroutines) % len(creds) {
				select {
				case <-ctx.Done():
					return
				case <-pace.C:
				}
				c := creds[i]
				ts := sources[c.ID]
				if ts == nil {
					var err error
					ts, err = client.NewTokenSource(nc, c.Vendor, c.ID, client.WithSubjectPrefix(p.cfg.NATS.SubjectPrefix))
					if err != nil {
						p.t.Errorf("token source: %v", err)
						return
					}
					sources[c.ID] = ts
				}
				tok, err := ts.TokenContext(ctx)
				if err != nil {
					if ctx.Err() == nil {
						wg.noteError(err)
					}
					continue // not issued yet, or shutting down
				}
				path := "/halaxy/main/Patient"
				if c.Vendor == "portal" {
					path = "/oauth2/Patient"
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.sbURL+path, nil)
				req.Header.Set("Accept", "application/fhir+json")
				req.Header.Set("User-Agent", "tokenrelay test (test@tokenrelay.invalid)")
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				resp, err := hc.Do(req)
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						p.t.Logf("patient request: %v", err)
					}
					continue
				}
				if resp.StatusCode == http.StatusOK {
					wg.Accepted.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	return &wg
}

// secretsOf lists every secret of the run: the client secrets and every
// token the sandbox issued.
func (p *pipeline) secretsOf() []string {
	var out []string
	for _, c := range p.cfg.Credentials {
		out = append(out, c.ClientSecret.Reveal())
		out = append(out, p.sandbox.IssuedTokens(c.ClientID)...)
	}
	return out
}
