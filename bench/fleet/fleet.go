package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// tier is one vendor instance of the fleet: a kind and the lifetime its
// tokens have in production, which the run divides by the speedup.
type tier struct {
	vendor string
	kind   config.Kind
	path   string
	life   time.Duration
	// secrets gives credential c the secrets its kind takes, known to
	// the sandbox.
	secrets func(sb *sandbox.Sandbox, c *config.Credential) error
}

var tiers = []tier{
	{"redox", config.KindRedox, sandbox.RedoxPath, 5 * time.Minute, redoxSecrets}, // Redox: 5 minutes
	{"portal-15m", config.KindFHIRPortal, sandbox.FHIRPortalPath, 15 * time.Minute, clientSecrets},
	{"portal-1h", config.KindFHIRPortal, sandbox.FHIRPortalPath, time.Hour, clientSecrets},
	{"healthsync-6h", config.KindHealthSync, sandbox.HealthSyncPath, 6 * time.Hour, healthSyncSecrets}, // API key checked every 6h
	{"redox-legacy", config.KindRedoxLegacy, sandbox.RedoxLegacyPath, 24 * time.Hour, clientSecrets},   // legacy: 24 hours
}

// redoxSecrets gives c a P-384 signing key registered with the sandbox.
func redoxSecrets(sb *sandbox.Sandbox, c *config.Credential) error {
	pk, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		return err
	}
	pemKey := secret.New(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	jwk, err := redox.PublicJWK(pemKey, "kid-"+c.ID)
	if err != nil {
		return err
	}
	c.ClientID, c.PrivateKey, c.KeyID = "client-"+c.ID, pemKey, "kid-"+c.ID
	return sb.AddRedoxKey(c.ClientID, c.KeyID, jwk)
}

// healthSyncSecrets gives c an API key of the sandbox's "bench" plan.
func healthSyncSecrets(sb *sandbox.Sandbox, c *config.Credential) error {
	_, k := sb.AddHealthSyncKey("bench", []string{"read"})
	c.APIKey = secret.New(k)
	return nil
}

// clientSecrets gives c an OAuth client registered with the sandbox.
func clientSecrets(sb *sandbox.Sandbox, c *config.Credential) error {
	c.ClientID, c.ClientSecret = "client-"+c.ID, secret.New(randomSecret(24))
	sb.AddClient(c.ClientID, c.ClientSecret.Reveal())
	return nil
}

// renewal is one token.renewed event as the fleet run records it.
type renewal struct {
	gen             int64
	issued, expires time.Time
	vendor          string
}

// runFleet runs o.fleetN credentials of every kind through one scheduler
// and one worker for o.warmup + o.duration, each token living its
// production lifetime divided by o.speedup (the pipeline's
// max_token_lifetime; the sandbox's tokens live longer), and reports
// renewals per second and how many happened before their token's
// two-thirds point.
func runFleet(ctx context.Context, o options, db int) error {
	sb := sandbox.New(sandbox.Options{RealTokenLifetime: 24 * time.Hour})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	sb.SetHealthSyncPlan("bench", -1)

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg := &config.Config{
		Redis:     config.Redis{URL: fmt.Sprintf("redis://%s/%d", o.redisAddr, db)},
		NATS:      config.NATS{URL: o.natsURL, Stream: "BENCH_FLEET_" + strings.ToUpper(randomSecret(4)), SubjectPrefix: "benchfleet" + strings.ToLower(randomSecret(3)) + "."},
		HTTP:      config.HTTP{Addr: "127.0.0.1:0"},
		Scheduler: config.Scheduler{PollInterval: config.Duration(20 * time.Millisecond)},
		Vendors:   map[string]config.Vendor{},
		SecretKey: secret.New(string(key)),
	}
	for _, t := range tiers {
		cfg.Vendors[t.vendor] = config.Vendor{Kind: t.kind, BaseURL: srv.URL + t.path,
			MaxTokenLifetime: config.Duration(time.Duration(float64(t.life) / o.speedup))}
	}
	for i := range o.fleetN {
		t := tiers[i%len(tiers)]
		id := fmt.Sprintf("%s-%05d", t.vendor, i)
		c := config.Credential{ID: id, Vendor: t.vendor}
		if err := t.secrets(sb, &c); err != nil {
			return err
		}
		cfg.Credentials = append(cfg.Credentials, c)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}

	logFile, err := os.CreateTemp("", "bench-fleet-*.log")
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := zerolog.New(logFile).Level(zerolog.WarnLevel).With().Timestamp().Logger()

	// The recorder: every event of the stream, as a subscriber sees it.
	nc, err := nats.Connect(o.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: cfg.NATS.Stream, SubjectPrefix: cfg.NATS.SubjectPrefix}); err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(dctx, cfg.NATS.Stream)
	}()
	var mu sync.Mutex
	byCred := map[string][]renewal{}
	byType := map[string]int{}
	cons, err := js.OrderedConsumer(ctx, cfg.NATS.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var env events.Envelope
		if json.Unmarshal(m.Data(), &env) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		byType[env.Type]++
		if env.Type != events.TypeTokenRenewed {
			return
		}
		var d events.TokenRenewed
		if json.Unmarshal(env.Data, &d) != nil {
			return
		}
		byCred[d.Credential] = append(byCred[d.Credential], renewal{gen: d.Generation, issued: d.IssuedAt, expires: d.ExpiresAt, vendor: d.Vendor})
	})
	if err != nil {
		return err
	}
	defer cc.Stop()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var roles sync.WaitGroup
	errs := make(chan error, 2)
	start := func(run func(context.Context, *app.Env) error) error {
		env, err := app.Connect(ctx, cfg, log)
		if err != nil {
			return err
		}
		roles.Go(func() {
			defer env.Close()
			if err := run(runCtx, env); err != nil {
				errs <- err
			}
		})
		return nil
	}
	began := time.Now()
	if err := start(app.RunScheduler); err != nil {
		return err
	}
	listening := make(chan net.Addr, 1)
	if err := start(func(ctx context.Context, env *app.Env) error {
		return app.RunWorker(ctx, env, app.WorkerOptions{Concurrency: o.concurrency, TaskCheckInterval: 20 * time.Millisecond,
			OnListen: func(a net.Addr) { listening <- a }})
	}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "fleet: %d credentials, warm-up %s, measuring %s (logs: %s)\n", o.fleetN, o.warmup, o.duration, logFile.Name())
	windowStart := began.Add(o.warmup)
	windowEnd := windowStart.Add(o.duration)
	select {
	case <-time.After(time.Until(windowEnd)):
	case err := <-errs:
		return fmt.Errorf("a role failed: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	cancel()
	roles.Wait()
	// Let the recorder catch up with the stream.
	time.Sleep(2 * time.Second)
	cc.Stop()

	mu.Lock()
	defer mu.Unlock()
	return report(o, byCred, byType, windowStart, windowEnd, sb)
}

// report prints the renewals of the measured window: a renewal of
// generation g+1 is on time when its token was requested no later than
// issued(g) + 2/3 (expires(g) - issued(g)), the point the pipeline aims
// before (with jitter of up to a tenth of the lifetime earlier).
func report(o options, byCred map[string][]renewal, byType map[string]int, from, to time.Time, sb *sandbox.Sandbox) error {
	type agg struct {
		renewals, onTime int
		lateBy           []float64 // lateness past 2/3, as a fraction of the lifetime
	}
	per := map[string]*agg{}
	total := &agg{}
	for _, rs := range byCred {
		slices.SortFunc(rs, func(a, b renewal) int { return int(a.gen - b.gen) })
		for i := 1; i < len(rs); i++ {
			prev, cur := rs[i-1], rs[i]
			if cur.gen != prev.gen+1 || cur.issued.Before(from) || cur.issued.After(to) {
				continue
			}
			a := per[cur.vendor]
			if a == nil {
				a = &agg{}
				per[cur.vendor] = a
			}
			life := prev.expires.Sub(prev.issued)
			deadline := prev.issued.Add(life * 2 / 3)
			for _, x := range []*agg{a, total} {
				x.renewals++
				if !cur.issued.After(deadline) {
					x.onTime++
				} else {
					x.lateBy = append(x.lateBy, float64(cur.issued.Sub(deadline))/float64(life))
				}
			}
		}
	}
	secs := to.Sub(from).Seconds()
	fmt.Printf("## Mixed fleet: %d credentials of every kind, lifetimes 5 min to 24 h compressed %gx\n\n", o.fleetN, o.speedup)
	fmt.Printf("One scheduler and one worker (concurrency %d) in one process, poll interval 20 ms, the sandbox in process; warm-up %s, then %s measured. A renewal is on time when it was asked for no later than two thirds into the life of the token it replaces.\n\n", o.concurrency, o.warmup, o.duration)
	fmt.Printf("| vendor | production lifetime | compressed | renewals | renewals/s | on time (before 2/3) | late ones: median / max lateness (fraction of lifetime) |\n|---|---|---|---|---|---|---|\n")
	for _, t := range tiers {
		a := per[t.vendor]
		if a == nil {
			a = &agg{}
		}
		fmt.Printf("| %s | %s | %s | %d | %.1f | %s | %s |\n", t.vendor, t.life, time.Duration(float64(t.life)/o.speedup).Round(time.Millisecond),
			a.renewals, float64(a.renewals)/secs, share(a.onTime, a.renewals), lateness(a.lateBy))
	}
	fmt.Printf("| **all** | | | %d | **%.1f** | **%s** | %s |\n\n", total.renewals, float64(total.renewals)/secs, share(total.onTime, total.renewals), lateness(total.lateBy))
	fmt.Printf("Events in the stream over the whole run: ")
	for _, k := range sortedKeys(byType) {
		fmt.Printf("%s %d; ", k, byType[k])
	}
	fmt.Printf("sandbox: %d uses of an expired token.\n\n", sb.ExpiredUses())
	return nil
}

func share(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}

func lateness(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	slices.Sort(xs)
	return fmt.Sprintf("%.3f / %.3f", xs[len(xs)/2], xs[len(xs)-1])
}
