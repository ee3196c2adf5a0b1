// Package devmode runs the whole tokenrelay pipeline in one process for a
// newcomer's first five minutes: an embedded Redis (miniredis) and NATS
// server with JetStream, the vendor sandbox with about twenty credentials
// whose tokens live for seconds, the scheduler and a worker, and a live view
// of renewals and events. REDIS_URL and NATS_URL switch it to real servers.
// cmd/tokenrelay-dev (make run) runs it.
package devmode

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/web/httpserver"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// Options tune the dev mode. Zero values take the defaults given.
type Options struct {
	// Credentials is how many sandbox credentials to create (default 20).
	Credentials int
	// TokenLifetime is how long sandbox tokens really live (default 9s);
	// Halaxy's token endpoint still claims an hour, as the real one does.
	TokenLifetime time.Duration
	// Out receives the live view (default os.Stdout); Live redraws it in
	// place (for a terminal), otherwise a summary is printed every 5 s.
	Out  io.Writer
	Live bool
	// SummaryEvery is how often the view is printed when not Live
	// (default 5s).
	SummaryEvery time.Duration
	// LogFile receives the processes' logs (default: a file in the temp dir).
	LogFile string
	// Lookup reads the environment (default os.LookupEnv): REDIS_URL and
	// NATS_URL switch to real servers.
	Lookup func(string) (string, bool)
	// Demo, if true, injects a vendor outage and deletes a client now and
	// then so that failures, recoveries and a revocation show up.
	Demo bool
	// AdminToken is the admin token of the operator pages and the admin
	// API (default: a random one, printed with the pages' address).
	AdminToken string
	// WebhookEvery is how often the sandbox's Halaxy pushes an id-only
	// Patient notification to the worker's webhook receiver, which relays
	// it (webhook.received) and fetches the patient through the shared
	// budget (request.completed). Default 4s; negative: no webhooks.
	WebhookEvery time.Duration
	// TracesURL, if set, is where the traces can be seen (a Jaeger
	// search page), printed with the other addresses. Traces are sent
	// wherever the OTEL_* variables read through Lookup say (see
	// internal/tracing); cmd/tokenrelay-dev -traces starts a Jaeger and
	// names it.
	TracesURL string
}

// Run runs the dev pipeline until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Credentials <= 0 {
		o.Credentials = 20
	}
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = 9 * time.Second
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.SummaryEvery <= 0 {
		o.SummaryEvery = 5 * time.Second
	}
	if o.WebhookEvery == 0 {
		o.WebhookEvery = 4 * time.Second
	}
	if o.Lookup == nil {
		o.Lookup = os.LookupEnv
	}
	if o.LogFile == "" {
		o.LogFile = filepath.Join(os.TempDir(), "tokenrelay-dev.log")
	}
	logf, err := os.Create(o.LogFile)
	if err != nil {
		return fmt.Errorf("devmode: log file: %w", err)
	}
	defer logf.Close()
	log := zerolog.New(logf).Hook(tracing.LogHook{}).With().Timestamp().Logger()
	flushTraces, err := tracing.Setup(ctx, "tokenrelay-dev", func(k string) string { v, _ := o.Lookup(k); return v })
	if err != nil {
		return fmt.Errorf("devmode: %w", err)
	}
	defer func() { _ = flushTraces(context.Background()) }()

	redisURL, stopRedis, err := startRedis(o.Lookup)
	if err != nil {
		return err
	}
	defer stopRedis()
	natsURL, stopNATS, err := startNATS(o.Lookup)
	if err != nil {
		return err
	}
	defer stopNATS()

	sb := sandbox.New(sandbox.Options{RealTokenLifetime: o.TokenLifetime, Logger: log.With().Str("process", "sandbox").Logger()})
	sbLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("devmode: sandbox listener: %w", err)
	}
	sbSrv := httpserver.New(sb.Handler(), httpserver.Timeouts{})
	go func() { _ = sbSrv.Serve(sbLn) }()
	defer sbSrv.Close()
	sandboxURL := "http://" + sbLn.Addr().String()

	cfg, err := Config(redisURL, natsURL, sandboxURL, o.TokenLifetime, o.Credentials, sb)
	if err != nil {
		return err
	}
	if o.AdminToken == "" {
		o.AdminToken = randomSecret()
	}
	cfg.HTTP.AdminToken = secret.New(o.AdminToken)
	webhookToken := randomSecret()
	if o.WebhookEvery > 0 && len(cfg.Credentials) > 0 {
		// Halaxy's webhooks carry a static authentication header; the
		// fetches of id-only notifications use the first clinic's token.
		hx := cfg.Vendors["halaxy-au"]
		hx.Webhooks = config.Webhooks{Verify: config.VerifyToken, Secret: secret.New(webhookToken),
			Header: "Authorization", FetchCredential: cfg.Credentials[0].ID}
		cfg.Vendors["halaxy-au"] = hx
		sb.SetFHIRResources(devPatients)
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("devmode: webhook configuration: %w", err)
		}
	}
	env, err := app.Connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer env.Close()

	follower, err := Follow(env.NATS, cfg.NATS.SubjectPrefix)
	if err != nil {
		return err
	}
	defer follower.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	var httpAddr string
	var addrOnce sync.Once
	addrReady := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); errc <- app.RunScheduler(runCtx, env) }()
	go func() {
		defer wg.Done()
		errc <- app.RunWorker(runCtx, env, app.WorkerOptions{
			TaskCheckInterval: 50 * time.Millisecond,
			OnListen: func(a net.Addr) {
				addrOnce.Do(func() { httpAddr = a.String(); close(addrReady) })
			},
		})
	}()
	select {
	case <-addrReady:
	case err := <-errc:
		cancel()
		wg.Wait()
		return err
	}
	if o.Demo {
		go demo(runCtx, sb, cfg)
	}
	if hx := cfg.Vendors["halaxy-au"]; o.WebhookEvery > 0 && hx.Webhooks.Verify != "" {
		go pushWebhooks(runCtx, "http://"+httpAddr+"/webhooks/halaxy-au", webhookToken, o.WebhookEvery, log)
	}

	footer := fmt.Sprintf("redis %s · nats %s · sandbox %s · worker http://%s/healthz\nlogs: %s · subscribe: nats sub -s %s 'token.renewed.>'",
		redactURL(redisURL), natsURL, sandboxURL, httpAddr, o.LogFile, natsURL)
	footer += fmt.Sprintf("\noperator pages: http://%s/ui/ (admin token %s) · queues: http://%s/asynqmon/", httpAddr, o.AdminToken, httpAddr)
	if o.TracesURL != "" {
		footer += "\ntraces (each renewal one trace): " + o.TracesURL
	}
	view := time.NewTicker(min(500*time.Millisecond, o.SummaryEvery))
	defer view.Stop()
	lastSummary := time.Time{}
	for {
		select {
		case <-ctx.Done():
			cancel()
			wg.Wait()
			fmt.Fprintln(o.Out, "\ntokenrelay dev mode stopped cleanly.")
			return nil
		case err := <-errc:
			cancel()
			wg.Wait()
			if err != nil {
				return err
			}
			return errors.New("devmode: a role stopped unexpectedly")
		case now := <-view.C:
			if !o.Live && now.Sub(lastSummary) < o.SummaryEvery {
				continue
			}
			lastSummary = now
			rows, err := scanAll(ctx, env.Store)
			if err != nil {
				continue
			}
			if o.Live {
				fmt.Fprint(o.Out, "\033[H\033[2J")
			}
			Render(o.Out, now, rows, follower.Last, follower.Counts(), footer)
		}
	}
}

// Config is the dev mode's configuration: one Halaxy vendor and one generic
// OAuth2 vendor, both pointing at the sandbox, and n credentials registered
// with the sandbox.
func Config(redisURL, natsURL, sandboxURL string, lifetime time.Duration, n int, sb *sandbox.Sandbox) (*config.Config, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg := &config.Config{
		Redis: config.Redis{URL: redisURL},
		NATS:  config.NATS{URL: natsURL, Stream: "TOKENRELAY_DEV", SubjectPrefix: ""},
		HTTP:  config.HTTP{Addr: "127.0.0.1:0"},
		Vendors: map[string]config.Vendor{
			"halaxy-au": {Kind: config.KindHalaxy, BaseURL: sandboxURL + "/halaxy/main/",
				UserAgent: "tokenrelay dev (dev@tokenrelay.invalid)", MaxTokenLifetime: config.Duration(lifetime)},
			"portal": {Kind: config.KindOAuth2, BaseURL: sandboxURL + "/oauth2/", TokenURL: sandboxURL + "/oauth2/token",
				MaxTokenLifetime: config.Duration(lifetime)},
		},
		SecretKey: secret.New(string(key)),
	}
	for i := range n {
		vendor, id := "halaxy-au", fmt.Sprintf("clinic-%02d", i+1)
		if i%4 == 3 {
			vendor, id = "portal", fmt.Sprintf("patient-%02d", i+1)
		}
		clientID, clientSecret := "cid-"+id, randomSecret()
		sb.AddClient(clientID, clientSecret)
		cfg.Credentials = append(cfg.Credentials, config.Credential{ID: id, Vendor: vendor, ClientID: clientID, ClientSecret: secret.New(clientSecret)})
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("devmode: built an invalid configuration: %w", err)
	}
	return cfg, nil
}

// randomSecret is 32 random bytes in base64url.
func randomSecret() string {
	b := make([]byte, 32) // 43 characters: what config wants of an admin token
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func startRedis(lookup func(string) (string, bool)) (string, func(), error) {
	if u, ok := lookup("REDIS_URL"); ok && u != "" {
		return u, func() {}, nil
	}
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true) // keys (the relay's lease, asynq's state) expire with the clock
	if err := m.Start(); err != nil {
		return "", nil, fmt.Errorf("devmode: start embedded redis: %w", err)
	}
	return "redis://" + m.Addr() + "/0", m.Close, nil
}

func startNATS(lookup func(string) (string, bool)) (string, func(), error) {
	if u, ok := lookup("NATS_URL"); ok && u != "" {
		return u, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "tokenrelay-dev-nats-")
	if err != nil {
		return "", nil, fmt.Errorf("devmode: nats store dir: %w", err)
	}
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true})
	if err != nil {
		return "", nil, fmt.Errorf("devmode: embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return "", nil, errors.New("devmode: embedded nats did not start")
	}
	return ns.ClientURL(), func() { ns.Shutdown(); ns.WaitForShutdown(); _ = os.RemoveAll(dir) }, nil
}

// demo makes the interesting things happen: a short vendor outage every
// 45 s for one credential (token.refresh_failed, then token.renewed with
// recovered), and, after a minute, a client deleted at the vendor
// (key.revoked).
func demo(ctx context.Context, sb *sandbox.Sandbox, cfg *config.Config) {
	if len(cfg.Credentials) < 3 {
		return
	}
	flaky, doomed := cfg.Credentials[1], cfg.Credentials[2]
	outage := time.NewTicker(45 * time.Second)
	defer outage.Stop()
	revoke := time.After(60 * time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-outage.C:
			sb.Inject(sandbox.Fault{ClientID: flaky.ClientID, Kind: sandbox.FaultServerError, Status: http.StatusServiceUnavailable, Times: 2})
		case <-revoke:
			sb.DeleteClient(doomed.ClientID)
		}
	}
}

// devPatients is how many patients the dev sandbox's FHIR API serves
// (Patient/1001 and up), named in turn by its notifications.
const devPatients = 50

// pushWebhooks is the sandbox's Halaxy calling the worker as the real one
// does: a subscription handshake, then an id-only Patient notification
// every interval, each retried on the Standard Webhooks schedule until
// answered 2xx.
func pushWebhooks(ctx context.Context, url, token string, every time.Duration, log zerolog.Logger) {
	log = log.With().Str("process", "sandbox").Str("component", "webhooks").Logger()
	sender, err := sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{
		URL: url, Scheme: sandbox.SchemeToken, Header: "Authorization", Secrets: []string{token},
	})
	if err != nil {
		log.Error().Err(err).Msg("dev webhooks not sent")
		return
	}
	sub := sandbox.NewFHIRSubscription("dev-patients", "Patient", nil)
	bodies := func(n int) []byte {
		if n == 0 {
			return sub.Handshake()
		}
		return sub.Notify(false, fmt.Sprintf("Patient/%d", 1001+(n-1)%devPatients))
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; ; n++ {
		if _, err := sender.Send(ctx, sandbox.Delivery{Body: bodies(n)}); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("dev webhook not delivered")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func redactURL(u string) string {
	if i := strings.Index(u, "@"); i > 0 {
		if j := strings.Index(u, "://"); j > 0 {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}
