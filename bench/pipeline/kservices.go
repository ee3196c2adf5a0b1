package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// How K services get their tokens.
const (
	modeXOAuth2Halaxy = "x/oauth2, Halaxy endpoint"
	modeXOAuth2Honest = "x/oauth2, honest endpoint"
	modeTokenrelay    = "tokenrelay client"
)

var kModes = []string{modeXOAuth2Halaxy, modeXOAuth2Honest, modeTokenrelay}

// kRow is what K services sharing one credential did in one mode.
type kRow struct {
	K                       int
	Mode                    string
	ClientID                string
	TokenCalls              int // token-endpoint calls for the credential during the run
	Requests                int64
	OK, Unauthorized, Other int64
	TokenErrors             int64 // the token source failed
}

type kResult struct {
	Scale        float64
	Hours        float64       // simulated hours
	Every        time.Duration // simulated time between two requests of one service
	RealLifetime time.Duration // simulated
	Claimed      time.Duration // simulated
	Rows         []kRow
}

// kService is one service: a token source and how it calls the API.
type kService struct {
	row   *kCounters
	token func(ctx context.Context) (string, error)
	call  func(ctx context.Context, token string) (int, error)
}

type kCounters struct {
	requests, ok, unauthorized, other, tokenErrors atomic.Int64
}

// runKServices simulates hours of K services sharing one Halaxy
// credential, time compressed by scale (an hour takes 3600s/scale): each
// service calls GET Patient every `every` (simulated) with a token from
// (a) its own golang.org/x/oauth2 client-credentials token source against
// the sandbox's Halaxy token endpoint, which claims expires_in 3600 while
// its tokens die after 15 minutes; (b) the same against the sandbox's
// generic OAuth2 endpoint, which tells the truth (15 minutes); (c) the
// tokenrelay client package, from a pipeline that manages the credential.
func runKServices(ctx context.Context, admin *redis.Client, redisURL, natsURL string, nc *nats.Conn, ks []int, scale, hours float64, every time.Duration, log zerolog.Logger, progress func(string, ...any)) (*kResult, error) {
	sim := func(d time.Duration) time.Duration { return time.Duration(float64(d) / scale) }
	res := &kResult{Scale: scale, Hours: hours, Every: every,
		RealLifetime: sandbox.DefaultRealTokenLifetime, Claimed: sandbox.DefaultClaimedExpiresIn}
	if err := admin.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sb := sandbox.New(sandbox.Options{
		RealTokenLifetime: sim(res.RealLifetime),
		ClaimedExpiresIn:  sim(res.Claimed),
		HalaxyRateLimit:   -1, // 500 a minute is a real-time window; this phase is not about it
	})
	sbURL, sbDone, err := startSandbox(runCtx, sb)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); <-sbDone }()

	// The tokenrelay side: one credential per K, as static credentials.
	n := newNames("k")
	cfg, err := benchConfig(redisURL, natsURL, sbURL, n, sim(res.RealLifetime))
	if err != nil {
		return nil, err
	}
	for _, k := range ks {
		id, cid, sec := fmt.Sprintf("shared-k%d", k), fmt.Sprintf("relay-k%d", k), randomSecret()
		sb.AddClient(cid, sec)
		cfg.Credentials = append(cfg.Credentials, config.Credential{ID: id, Vendor: benchVendor, ClientID: cid, ClientSecret: secret.New(sec)})
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	deleteStream, err := ensureStream(ctx, nc, cfg)
	if err != nil {
		return nil, err
	}
	defer deleteStream()
	schedEnv, err := app.Connect(runCtx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer schedEnv.Close()
	workEnv, err := app.Connect(runCtx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer workEnv.Close()
	var roles sync.WaitGroup
	roles.Go(func() { _ = app.RunScheduler(runCtx, schedEnv) })
	roles.Go(func() {
		_ = app.RunWorker(runCtx, workEnv, app.WorkerOptions{TaskCheckInterval: 50 * time.Millisecond})
	})
	defer func() { cancel(); roles.Wait() }()
	err = waitFor(ctx, time.Minute, 50*time.Millisecond, func() (bool, error) {
		renewed := 0
		err := schedEnv.Store.Scan(ctx, func(s store.Summary) error {
			if s.Generation > 0 {
				renewed++
			}
			return nil
		})
		return renewed == len(ks), err
	})
	if err != nil {
		return nil, fmt.Errorf("kservices: the shared credentials did not get their first token: %w", err)
	}

	halaxyAPI, err := halaxy.New(halaxy.Options{BaseURL: sbURL + sandbox.HalaxyPath, UserAgent: benchUserAgent,
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}})
	if err != nil {
		return nil, err
	}
	halaxyCall := func(ctx context.Context, token string) (int, error) {
		resp, err := halaxyAPI.Get(ctx, "Patient", secret.New(token))
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	honestCall := func(ctx context.Context, token string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sbURL+sandbox.OAuth2Path+"Patient", nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := plain.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	// x/oauth2 reuses a token until 10 s before the expiry it was told;
	// those 10 s are compressed like everything else.
	earlyExpiry := sim(10 * time.Second)
	tokenHTTP := &http.Client{Timeout: 10 * time.Second, Transport: halaxyJSON{base: &http.Transport{MaxIdleConnsPerHost: 256}}}

	var services []kService
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	counters := make(map[string]*kCounters)
	for _, k := range ks {
		for _, mode := range kModes {
			row := kRow{K: k, Mode: mode}
			c := &kCounters{}
			switch mode {
			case modeXOAuth2Halaxy, modeXOAuth2Honest:
				row.ClientID = fmt.Sprintf("xo-halaxy-k%d", k)
				conf := &clientcredentials.Config{TokenURL: sbURL + sandbox.HalaxyPath + "oauth/token", AuthStyle: oauth2.AuthStyleInParams}
				hctx := context.WithValue(runCtx, oauth2.HTTPClient, tokenHTTP)
				call := halaxyCall
				if mode == modeXOAuth2Honest {
					row.ClientID = fmt.Sprintf("xo-honest-k%d", k)
					conf = &clientcredentials.Config{TokenURL: sbURL + sandbox.OAuth2Path + "token", AuthStyle: oauth2.AuthStyleInHeader}
					hctx = context.WithValue(runCtx, oauth2.HTTPClient, plain)
					call = honestCall
				}
				conf.ClientID, conf.ClientSecret = row.ClientID, randomSecret()
				sb.AddClient(conf.ClientID, conf.ClientSecret)
				for range k {
					ts := oauth2.ReuseTokenSourceWithExpiry(nil, conf.TokenSource(hctx), earlyExpiry)
					services = append(services, kService{row: c, call: call, token: func(context.Context) (string, error) {
						t, err := ts.Token()
						if err != nil {
							return "", err
						}
						return t.AccessToken, nil
					}})
				}
			case modeTokenrelay:
				row.ClientID = fmt.Sprintf("relay-k%d", k)
				for range k {
					snc, err := nats.Connect(natsURL, nats.Name("bench-service"))
					if err != nil {
						return nil, err
					}
					ts, err := client.NewTokenSource(snc, benchVendor, fmt.Sprintf("shared-k%d", k),
						client.WithSubjectPrefix(cfg.NATS.SubjectPrefix), client.WithExpiryMargin(earlyExpiry))
					if err != nil {
						snc.Close()
						return nil, err
					}
					closers = append(closers, func() { _ = ts.Close(); snc.Close() })
					services = append(services, kService{row: c, call: halaxyCall, token: func(ctx context.Context) (string, error) {
						t, err := ts.TokenContext(ctx)
						if err != nil {
							return "", err
						}
						return t.AccessToken, nil
					}})
				}
			}
			counters[row.ClientID] = c
			res.Rows = append(res.Rows, row)
		}
	}

	span := sim(time.Duration(hours * float64(time.Hour)))
	period := sim(every)
	progress("kservices: %d services for %.1f simulated hours (%s), one request each per %s simulated (%s)",
		len(services), hours, span.Round(time.Second), every, period)
	t0 := time.Now()
	end := t0.Add(span)
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Go(func() {
			next := t0.Add(time.Duration(rand.Int64N(int64(period))))
			for next.Before(end) {
				select {
				case <-runCtx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				next = next.Add(period)
				s.row.requests.Add(1)
				rctx, rcancel := context.WithTimeout(runCtx, 5*time.Second)
				tok, err := s.token(rctx)
				if err != nil {
					rcancel()
					s.row.tokenErrors.Add(1)
					continue
				}
				status, err := s.call(rctx, tok)
				rcancel()
				switch {
				case err != nil:
					s.row.other.Add(1)
				case status == http.StatusOK:
					s.row.ok.Add(1)
				case status == http.StatusUnauthorized:
					s.row.unauthorized.Add(1)
				default:
					s.row.other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	for i := range res.Rows {
		r := &res.Rows[i]
		for _, at := range sb.TokenCallTimes(r.ClientID) {
			if !at.Before(t0) && at.Before(end) {
				r.TokenCalls++
			}
		}
		c := counters[r.ClientID]
		r.Requests, r.OK, r.Unauthorized, r.Other, r.TokenErrors = c.requests.Load(), c.ok.Load(), c.unauthorized.Load(), c.other.Load(), c.tokenErrors.Load()
	}
	return res, nil
}

// halaxyJSON lets golang.org/x/oauth2 talk to Halaxy's token endpoint,
// which wants the client-credentials request as a JSON body, Accept
// application/fhir+json and a "NAME (EMAIL)" User-Agent: what a service
// using x/oauth2 against Halaxy has to add. Other requests pass as they are.
type halaxyJSON struct{ base http.RoundTripper }

func (t halaxyJSON) RoundTrip(r *http.Request) (*http.Response, error) {
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if r.Method != http.MethodPost || media != "application/x-www-form-urlencoded" || r.Body == nil {
		return t.base.RoundTrip(r)
	}
	raw, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(map[string]string{
		"grant_type": form.Get("grant_type"), "client_id": form.Get("client_id"), "client_secret": form.Get("client_secret"),
	})
	if err != nil {
		return nil, err
	}
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	r2.Header.Set("Content-Type", "application/json")
	r2.Header.Set("Accept", halaxy.MediaTypeFHIR)
	r2.Header.Set("User-Agent", benchUserAgent)
	return t.base.RoundTrip(r2)
}
