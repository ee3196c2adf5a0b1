package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// vendorName is the one vendor instance of the run (kind halaxy).
const vendorName = "halaxy-chaos"

// userAgent is the Halaxy User-Agent of the run.
const userAgent = "tokenrelay chaos (chaos@tokenrelay.invalid)"

// options shape a run.
type options struct {
	Credentials   int
	Schedulers    int
	Workers       int
	Duration      time.Duration // of the chaos phase
	TokenLifetime time.Duration // real and max_token_lifetime
	TokenLatency  time.Duration // added to every token answer
	KillEvery     time.Duration // mean time between SIGKILLs of a scheduler or worker
	RestartDelay  time.Duration // before a killed process is started again
	RedisKills    int           // SIGKILLs of Redis, spread over the run
	RedisDown     time.Duration // before Redis starts again from its AOF
	NATSDown      time.Duration // one stop of NATS, at 40% of the run; 0: none
	Consumers     int           // token.get consumers
	ConsumerPause time.Duration // between a consumer's requests
	Settle        time.Duration // bound on the recovery after the chaos
	Dir           string        // work directory (binaries, data, logs); "" a temporary one
	Bin           string        // the binaries, built already; "" builds them into Dir
	Out           io.Writer     // progress lines
}

// report is what a run found.
type report struct {
	Opts          options
	Verdict       verdict
	Consumers     *consumerStats
	Kills         map[string]int // by role kind
	Restarts      int            // process starts beyond the first of each slot
	RedisOutages  []time.Duration
	NATSOutage    time.Duration
	Recovery      time.Duration // from the end of the chaos to every credential renewed again
	Wall          time.Duration
	Abandoned     int // "issued token abandoned" log lines
	ErrorLines    int // level error log lines of the tokenrelay processes
	Dir           string
	SandboxCalls  int
	SandboxExpUse int // uses of an expired token the sandbox saw
}

// violations is every broken contract, judge's and the consumers'.
func (r *report) violations() []string {
	out := append([]string(nil), r.Verdict.Violations...)
	if r.Consumers != nil {
		out = append(out, r.Consumers.Violations...)
	}
	return out
}

// layout is what a scenario runs: its vendor, its credentials, and what
// the sandbox needs before the workers start.
type layout struct {
	// vendor is the configuration of the one vendor instance, reached at
	// baseURL (the sandbox, or a worker's proxy to it).
	vendor func(baseURL string) map[string]any
	// credentials are the static credentials of the configuration.
	credentials []map[string]any
	// scheduler is the configuration's scheduler section (nil: defaults).
	scheduler map[string]any
	// onCall, if set, sees every request a worker makes to the vendor
	// before it is forwarded.
	onCall func(slot string, r *http.Request)
}

// cluster is the processes of a run.
type cluster struct {
	opts       options
	layout     layout
	dir, bin   string
	redis      *server
	nats       *server
	sandbox    *server
	redisURL   string
	natsURL    string
	sandboxURL string
	secretKey  string
	creds      []string
	calls      callLog
	proxies    []*vendorProxy
	schedulers []*role
	workers    []*role
	killsMu    sync.Mutex
	kills      []kill
	outMu      sync.Mutex // serializes progress lines
}

// run builds the binaries, starts everything, applies the chaos for
// opts.Duration, lets it recover and judges the run.
func run(ctx context.Context, o options) (*report, error) {
	began := time.Now()
	c := &cluster{opts: o}
	env, err := c.start(ctx, halaxyFleet)
	if err != nil {
		return nil, err
	}
	defer c.teardown()
	defer env.Close()

	c.progress("waiting for every credential's first token")
	if err := waitFor(ctx, 2*time.Minute, func() (bool, error) {
		return everyRenewedPast(ctx, env.Store, nil)
	}); err != nil {
		return nil, fmt.Errorf("chaos: first tokens: %w", err)
	}
	consCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	stats, waitConsumers, err := runConsumers(consCtx, o.Consumers, c.natsURL, c.sandboxURL, vendorName, c.creds, o.ConsumerPause)
	if err != nil {
		return nil, err
	}

	rep := &report{Opts: o, Consumers: stats, Kills: map[string]int{}, Dir: c.dir}
	c.progress("chaos for %s: a SIGKILL every ~%s, %d Redis kill(s), NATS down %s", o.Duration, o.KillEvery, o.RedisKills, o.NATSDown)
	if err := c.chaos(ctx, rep); err != nil {
		return nil, err
	}
	chaosEnd := time.Now()
	atEnd, err := generations(ctx, env.Store)
	if err != nil {
		return nil, err
	}
	c.progress("chaos over; waiting for every credential to be renewed again")
	if err := waitFor(ctx, o.Settle, func() (bool, error) {
		return everyRenewedPast(ctx, env.Store, atEnd)
	}); err != nil {
		return nil, fmt.Errorf("chaos: recovery: %w", err)
	}
	rep.Recovery = time.Since(chaosEnd)
	stopConsumers()
	waitConsumers()

	c.progress("stopping the workers, then draining the outbox")
	for _, w := range c.workers {
		w.stop(30 * time.Second)
	}
	var evs []renewedEvent
	var others map[string]int
	var final map[string]finalState
	if err := waitFor(ctx, time.Minute, func() (bool, error) {
		final, err = finalStates(ctx, env.Store)
		if err != nil {
			return false, err
		}
		evs, others, err = readStream(ctx, env.JS, env.Config.NATS.Stream)
		if err != nil {
			return false, nil // NATS may still be catching up
		}
		last := map[string]int64{}
		for _, ev := range evs {
			last[ev.Credential] = max(last[ev.Credential], ev.Generation)
		}
		for id, f := range final {
			if last[id] != f.Generation {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		c.progress("the stream did not catch up with the store: %v (judging what is there)", err)
	}
	for _, s := range c.schedulers {
		s.stop(30 * time.Second)
	}
	vendorCalls, total, expired, err := c.sandboxStats(ctx)
	if err != nil {
		return nil, err
	}
	c.killsMu.Lock()
	kills := append([]kill(nil), c.kills...)
	c.killsMu.Unlock()
	rep.Verdict = judge(evidence{
		Credentials: c.creds, Events: evs, OtherEvents: others, Calls: c.calls.all(), Kills: kills,
		Final: final, VendorCalls: vendorCalls, ExcuseWindow: time.Duration(env.Config.Scheduler.ClaimLease),
	})
	rep.SandboxCalls, rep.SandboxExpUse = total, expired
	for _, r := range append(append([]*role(nil), c.schedulers...), c.workers...) {
		rep.Restarts += r.starts - 1
		a, e := scanLog(r.logPath)
		rep.Abandoned += a
		rep.ErrorLines += e
	}
	rep.Wall = time.Since(began)
	return rep, nil
}

func (c *cluster) progress(format string, args ...any) {
	if c.opts.Out != nil {
		c.outMu.Lock()
		defer c.outMu.Unlock()
		fmt.Fprintf(c.opts.Out, "%s chaos: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// setup builds the binaries and starts Redis, NATS and the sandbox, then
// asks prepare for the scenario's layout and starts the proxies and every
// scheduler and worker.
func (c *cluster) setup(ctx context.Context, prepare func(ctx context.Context, c *cluster) (layout, error)) error {
	o := c.opts
	c.dir = o.Dir
	if c.dir == "" {
		d, err := os.MkdirTemp("", "tokenrelay-chaos-")
		if err != nil {
			return err
		}
		c.dir = d
	}
	c.bin = o.Bin
	if c.bin == "" {
		c.bin = filepath.Join(c.dir, "bin")
		if err := buildBinaries(ctx, c.bin); err != nil {
			return err
		}
		c.progress("built cmd/scheduler, cmd/worker and cmd/sandbox into %s", c.bin)
	}
	var err error
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	for _, d := range []string{"redis", "nats", "sandbox", "spool"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o700); err != nil {
			return err
		}
	}
	c.redis = newRedis(ports[0], filepath.Join(c.dir, "redis"))
	c.redisURL = "redis://127.0.0.1:" + strconv.Itoa(ports[0]) + "/0"
	c.nats = newNATS(ports[1], filepath.Join(c.dir, "nats"))
	c.natsURL = "nats://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.redis.start(ctx); err != nil {
		return err
	}
	if err := c.nats.start(ctx); err != nil {
		return err
	}
	if err := c.startSandbox(ctx, ports[2]); err != nil {
		return err
	}
	if c.layout, err = prepare(ctx, c); err != nil {
		return err
	}
	key := make([]byte, 32)
	_, _ = crand.Read(key)
	c.secretKey = base64.StdEncoding.EncodeToString(key)
	for i := range o.Schedulers {
		slot := "scheduler-" + strconv.Itoa(i+1)
		r, err := c.newRole(slot, "scheduler", c.sandboxURL)
		if err != nil {
			return err
		}
		c.schedulers = append(c.schedulers, r)
	}
	for i := range o.Workers {
		slot := "worker-" + strconv.Itoa(i+1)
		var slotRole atomic.Pointer[role] // set once the proxy's URL is in its configuration
		p, err := startProxy(slot, c.sandboxURL, func() int {
			if r := slotRole.Load(); r != nil {
				return r.current()
			}
			return 0
		}, &c.calls, c.layout.onCall)
		if err != nil {
			return err
		}
		c.proxies = append(c.proxies, p)
		r, err := c.newRole(slot, "worker", p.URL)
		if err != nil {
			return err
		}
		slotRole.Store(r)
		c.workers = append(c.workers, r)
	}
	c.progress("%d credential(s), %d scheduler(s), %d worker(s); work directory %s", len(c.layout.credentials), o.Schedulers, o.Workers, c.dir)
	for _, r := range append(append([]*role(nil), c.schedulers...), c.workers...) {
		go r.run()
	}
	return nil
}

func (c *cluster) startSandbox(ctx context.Context, port int) error {
	o := c.opts
	var clients strings.Builder
	for i := range o.Credentials {
		id := fmt.Sprintf("chaos-%03d", i+1)
		c.creds = append(c.creds, id)
		fmt.Fprintf(&clients, "%s:%s\n", id, clientSecret(id))
	}
	clientsFile := filepath.Join(c.dir, "sandbox", "clients.txt")
	if err := os.WriteFile(clientsFile, []byte(clients.String()), 0o600); err != nil {
		return err
	}
	c.sandboxURL = "http://127.0.0.1:" + strconv.Itoa(port)
	c.sandbox = &server{
		name: "sandbox " + c.sandboxURL,
		argv: []string{filepath.Join(c.bin, "sandbox"), "-addr", "127.0.0.1:" + strconv.Itoa(port),
			"-clients", clientsFile, "-token-lifetime", o.TokenLifetime.String(), "-log-level", "warn"},
		log: filepath.Join(c.dir, "sandbox", "sandbox.log"),
		ready: func(ctx context.Context) error {
			return controlCall(ctx, http.MethodGet, c.sandboxURL+sandbox.ControlPath+"settings", nil, nil)
		},
	}
	return c.sandbox.start(ctx)
}

// halaxyFleet is the layout of the bad day: opts.Credentials Halaxy
// credentials whose tokens live opts.TokenLifetime, every token answer
// delayed opts.TokenLatency so that kills and outages catch renewals in
// flight.
func halaxyFleet(ctx context.Context, c *cluster) (layout, error) {
	err := controlCall(ctx, http.MethodPost, c.sandboxURL+sandbox.ControlPath+"faults",
		map[string]any{"kind": "latency", "latency": c.opts.TokenLatency.String()}, nil)
	if err != nil {
		return layout{}, err
	}
	l := layout{vendor: func(baseURL string) map[string]any {
		return map[string]any{"kind": "halaxy", "base_url": baseURL + sandbox.HalaxyPath, "user_agent": userAgent,
			"max_token_lifetime": c.opts.TokenLifetime.String()}
	}}
	for _, id := range c.creds {
		l.credentials = append(l.credentials, map[string]any{"id": id, "vendor": vendorName, "client_id": id, "client_secret": clientSecret(id)})
	}
	return l, nil
}

// clientSecret is the sandbox secret of a credential: random enough for a
// run, derived so that no table of them is needed.
func clientSecret(id string) string { return "chaos-secret-" + id + "-0123456789abcdef" }

// newRole writes the configuration of one slot (the workers each reach
// the vendor through their own proxy at vendorURL) and returns the slot.
func (c *cluster) newRole(slot, kind, vendorURL string) (*role, error) {
	o := c.opts
	cfg := map[string]any{
		"redis":       map[string]any{"url": c.redisURL},
		"nats":        map[string]any{"url": c.natsURL},
		"http":        map[string]any{"addr": "127.0.0.1:0"},
		"vendors":     map[string]any{vendorName: c.layout.vendor(vendorURL)},
		"credentials": c.layout.credentials,
		"worker":      map[string]any{"spool_dir": filepath.Join(c.dir, "spool", slot)},
	}
	if c.layout.scheduler != nil {
		cfg["scheduler"] = c.layout.scheduler
	}
	data, err := json.MarshalIndent(cfg, "", "  ") // JSON is YAML
	if err != nil {
		return nil, err
	}
	path := filepath.Join(c.dir, slot+".yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	env := append(os.Environ(), "TOKENRELAY_SECRET_KEY="+c.secretKey, "TOKENRELAY_HTTP_ADDR=127.0.0.1:0",
		"REDIS_URL=", "NATS_URL=")
	return &role{slot: slot, argv: []string{filepath.Join(c.bin, kind), "-config", path}, env: env,
		logPath: filepath.Join(c.dir, slot+".log"), restart: o.RestartDelay, exited: make(chan struct{})}, nil
}

// start sets the cluster up (see setup) and connects the run's own view
// of the store and the stream. After an error it has stopped what it
// started; else the caller tears the cluster down and closes the view.
func (c *cluster) start(ctx context.Context, prepare func(ctx context.Context, c *cluster) (layout, error)) (*app.Env, error) {
	if err := c.setup(ctx, prepare); err != nil {
		c.teardown()
		return nil, err
	}
	env, err := c.observer(ctx)
	if err != nil {
		c.teardown()
		return nil, err
	}
	return env, nil
}

// observer connects the run's own view of the store and the stream, with
// the schedulers' configuration.
func (c *cluster) observer(ctx context.Context) (*app.Env, error) {
	data, err := os.ReadFile(c.schedulers[0].argv[2])
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(data, func(k string) (string, bool) {
		if k == "TOKENRELAY_SECRET_KEY" {
			return c.secretKey, true
		}
		return "", false
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: configuration: %w", err)
	}
	return app.Connect(ctx, cfg, zerolog.Nop())
}

// chaos kills, stops and restarts for the run's duration.
func (c *cluster) chaos(ctx context.Context, rep *report) error {
	o := c.opts
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	roles := append(append([]*role(nil), c.schedulers...), c.workers...)
	wg.Go(func() { // a scheduler or a worker SIGKILLed every ~KillEvery
		for {
			wait := time.Duration(float64(o.KillEvery) * (0.6 + 0.8*rand.Float64()))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			r := roles[rand.IntN(len(roles))]
			if k, ok := r.kill(); ok {
				c.killsMu.Lock()
				c.kills = append(c.kills, k)
				c.killsMu.Unlock()
				mu.Lock()
				rep.Kills[strings.TrimRight(k.Slot, "-0123456789")]++
				mu.Unlock()
				c.progress("SIGKILL %s (start %d)", k.Slot, k.Instance)
			}
		}
	})
	for i := range o.RedisKills {
		at := time.Duration(float64(o.Duration) * (0.2 + 0.55*float64(i)/float64(max(1, o.RedisKills-1))))
		wg.Go(func() {
			if !sleepCtx(ctx, at) {
				return
			}
			c.progress("SIGKILL Redis; restarting it from its append-only file in %s", o.RedisDown)
			d, err := outage(ctx, c.redis, syscall.SIGKILL, o.RedisDown)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			rep.RedisOutages = append(rep.RedisOutages, d)
			mu.Unlock()
			c.progress("Redis back after %s", d.Round(time.Millisecond))
		})
	}
	if o.NATSDown > 0 {
		wg.Go(func() {
			if !sleepCtx(ctx, o.Duration*4/10) {
				return
			}
			c.progress("stopping NATS for %s", o.NATSDown)
			d, err := outage(ctx, c.nats, syscall.SIGTERM, o.NATSDown)
			if err != nil {
				fail(err)
				return
			}
			rep.NATSOutage = d
			c.progress("NATS back after %s", rep.NATSOutage.Round(time.Millisecond))
		})
	}
	wg.Wait()
	return firstErr
}

// outage stops s with sig, leaves it down for down, starts it again on
// its data, and returns how long it did not answer.
func outage(ctx context.Context, s *server, sig syscall.Signal, down time.Duration) (time.Duration, error) {
	began := time.Now()
	s.stop(sig)
	time.Sleep(down) // the outage itself
	if err := s.start(context.WithoutCancel(ctx)); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// teardown stops whatever still runs.
func (c *cluster) teardown() {
	for _, r := range append(append([]*role(nil), c.schedulers...), c.workers...) {
		r.stop(10 * time.Second)
	}
	for _, p := range c.proxies {
		p.close()
	}
	for _, s := range []*server{c.sandbox, c.nats, c.redis} {
		if s != nil {
			s.stop(syscall.SIGTERM)
		}
	}
}

// waitFor polls cond every half second until it holds, fails, or limit
// passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return err
			}
			return fmt.Errorf("not within %s", limit)
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// generations is every credential's generation in the store.
func generations(ctx context.Context, st *store.Store) (map[string]int64, error) {
	out := map[string]int64{}
	err := st.Scan(ctx, func(s store.Summary) error {
		out[s.ID] = s.Generation
		return nil
	})
	return out, err
}

// everyRenewedPast reports whether every credential is past the
// generation it had in since (every one has a token when since is nil).
func everyRenewedPast(ctx context.Context, st *store.Store, since map[string]int64) (bool, error) {
	gens, err := generations(ctx, st)
	if err != nil {
		return false, nil // Redis may be restarting
	}
	if since == nil {
		n := 0
		for _, g := range gens {
			if g > 0 {
				n++
			}
		}
		return n > 0 && n == len(gens), nil
	}
	for id, g := range since {
		if gens[id] <= g {
			return false, nil
		}
	}
	return true, nil
}

func finalStates(ctx context.Context, st *store.Store) (map[string]finalState, error) {
	out := map[string]finalState{}
	err := st.Scan(ctx, func(s store.Summary) error {
		out[s.ID] = finalState{State: string(s.State), Generation: s.Generation}
		return nil
	})
	return out, err
}

// readStream reads every event of the stream: the token.renewed ones in
// stream order, the others counted by type.
func readStream(ctx context.Context, js jetstream.JetStream, stream string) ([]renewedEvent, map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	last := info.State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, nil, err
	}
	var evs []renewedEvent
	others := map[string]int{}
	for seq := uint64(0); seq < last; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, nil, err
			}
			seq = md.Sequence.Stream
			var env events.Envelope
			if err := json.Unmarshal(m.Data(), &env); err != nil {
				return nil, nil, fmt.Errorf("chaos: event %d: %w", seq, err)
			}
			if env.Type != events.TypeTokenRenewed {
				others[env.Type]++
				continue
			}
			var d events.TokenRenewed
			if err := json.Unmarshal(env.Data, &d); err != nil {
				return nil, nil, fmt.Errorf("chaos: event %d data: %w", seq, err)
			}
			ev := renewedEvent{Seq: seq, MsgID: m.Headers().Get(nats.MsgIdHdr), Credential: d.Credential,
				Generation: d.Generation, Token: d.Fingerprint}
			if !d.PreviousExpiresAt.IsZero() {
				ev.Lead = d.PreviousExpiresAt.Sub(d.IssuedAt)
			}
			evs = append(evs, ev)
		}
		if batch.Error() != nil {
			return nil, nil, batch.Error()
		}
		if n == 0 {
			return nil, nil, errors.New("chaos: the stream stopped short of its last event")
		}
	}
	return evs, others, nil
}

// sandboxStats is the sandbox's count of token calls per client, in all,
// and of expired tokens used.
func (c *cluster) sandboxStats(ctx context.Context) (map[string]int, int, int, error) {
	var st struct {
		Total   int `json:"total_token_calls"`
		Expired int `json:"expired_uses"`
		Clients map[string]struct {
			Calls int `json:"token_calls"`
		} `json:"clients"`
	}
	if err := controlCall(ctx, http.MethodGet, c.sandboxURL+sandbox.ControlPath+"stats", nil, &st); err != nil {
		return nil, 0, 0, err
	}
	out := map[string]int{}
	for id, s := range st.Clients {
		out[id] = s.Calls
	}
	return out, st.Total, st.Expired, nil
}

// controlCall calls a control endpoint of the sandbox with an optional
// JSON body, decoding the answer into out when given.
func controlCall(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("chaos: sandbox %s %s: %s %s", method, url, resp.Status, b)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// scanLog counts a process log's "issued token abandoned" lines and its
// error lines.
func scanLog(path string) (abandoned, errorLines int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	for line := range bytes.Lines(data) {
		if bytes.Contains(line, []byte("issued token abandoned")) {
			abandoned++
		}
		if bytes.Contains(line, []byte(`"level":"error"`)) {
			errorLines++
		}
	}
	return abandoned, errorLines
}
