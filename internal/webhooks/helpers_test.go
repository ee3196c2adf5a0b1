package webhooks_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/internal/webhooks/verify"
	"github.com/tokenrelay/tokenrelay/secret"
)

var (
	start      = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	hsSecret   = "whsec_" + base64.StdEncoding.EncodeToString([]byte("healthsync-signing-key-0001"))
	hsOld      = "whsec_" + base64.StdEncoding.EncodeToString([]byte("healthsync-signing-key-0000"))
	halaxyAuth = "s3cret-halaxy-static-header"
	redoxToken = "s3cret-redox-verification"
	bodyKey    = "s3cret-body-hmac-key"
)

// testVendors is one vendor of each verification scheme.
func testVendors() map[string]config.Vendor {
	vs := map[string]config.Vendor{
		"healthsync": {Kind: config.KindHealthSync, Webhooks: config.Webhooks{
			Verify: config.VerifyStandardWebhooks, Secret: secret.New(hsSecret),
			PreviousSecrets: []secret.Value{secret.New(hsOld)},
		}},
		"halaxy-au": {Kind: config.KindHalaxy, Webhooks: config.Webhooks{
			Verify: config.VerifyToken, Secret: secret.New(halaxyAuth), FetchCredential: "clinic-42",
		}},
		"redox-prod": {Kind: config.KindRedox, Webhooks: config.Webhooks{
			Verify: config.VerifyToken, Secret: secret.New(redoxToken),
		}},
		"signed-body": {Kind: config.KindOAuth2, Webhooks: config.Webhooks{
			Verify: config.VerifyHMACSHA256, Secret: secret.New(bodyKey), FetchCredential: "clinic-7",
		}},
		"open":   {Kind: config.KindOAuth2, Webhooks: config.Webhooks{Verify: config.VerifyNone, AcceptUnverified: true, MaxBody: 256}},
		"closed": {Kind: config.KindOAuth2, Webhooks: config.Webhooks{Verify: config.VerifyNone}},
	}
	cfg := &config.Config{Vendors: vs}
	cfg.SetDefaults()
	return cfg.Vendors
}

// rig is a receiver on a test server, with its own stream and keys.
type rig struct {
	t       *testing.T
	srv     *httptest.Server
	client  *http.Client
	rdb     *redis.Client
	prefix  string
	js      jetstream.JetStream
	stream  string
	subject string // subject prefix
	clock   *testenv.Clock
	metrics *webhooks.Metrics
	logs    *testenv.Buffer
	fetches *fetchLog
	rcv     *webhooks.Receiver
	nc      *nats.Conn
	tune    func(vs map[string]config.Vendor)
}

type fetchLog struct {
	mu   sync.Mutex
	list []webhooks.Fetch
	fail bool
	// spans are the span contexts each fetch was enqueued under.
	spans []trace.SpanContext
}

func (f *fetchLog) Fetch(ctx context.Context, x webhooks.Fetch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return context.DeadlineExceeded
	}
	f.list = append(f.list, x)
	f.spans = append(f.spans, trace.SpanContextFromContext(ctx))
	return nil
}

func (f *fetchLog) all() []webhooks.Fetch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]webhooks.Fetch(nil), f.list...)
}

type rigOptions struct {
	natsURL string // "" for the shared server
	// tune, if set, changes the vendors' configuration before use.
	tune func(vs map[string]config.Vendor)
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	rdb, prefix := testenv.RedisPrefix(t)
	var js jetstream.JetStream
	var stream string
	var nc *nats.Conn
	if o.natsURL == "" {
		nc, js, stream = testenv.NATS(t)
	} else {
		var err error
		nc, err = nats.Connect(o.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err = jetstream.New(nc)
		require.NoError(t, err)
		stream = "WEBHOOKS"
	}
	subject := testenv.Unique("t") + "."
	_, err := events.EnsureStream(t.Context(), js, events.StreamConfig{Name: stream, SubjectPrefix: subject, Storage: jetstream.FileStorage})
	require.NoError(t, err)

	r := &rig{t: t, rdb: rdb, prefix: prefix, js: js, stream: stream, subject: subject,
		clock: testenv.NewClock(start), metrics: webhooks.NewMetrics(), logs: &testenv.Buffer{}, fetches: &fetchLog{},
		nc: nc, tune: o.tune}
	r.rcv, r.srv = r.receiver()
	r.client = testenv.HTTPClient()
	return r
}

// receiver is one more receiver (another worker's) on a test server, on
// the rig's Redis keys, stream, clock, fetcher, logs and metrics.
func (r *rig) receiver() (*webhooks.Receiver, *httptest.Server) {
	t := r.t
	vs := testVendors()
	if r.tune != nil {
		r.tune(vs)
	}
	vendors, unverified, err := webhooks.VendorsFromConfig(vs)
	require.NoError(t, err)
	require.Equal(t, []string{"open"}, unverified)
	rcv, err := webhooks.NewReceiver(webhooks.Deps{
		Vendors: vendors, JetStream: r.js, Connected: r.nc.IsConnected, Redis: r.rdb, KeyPrefix: r.prefix,
		SubjectPrefix: r.subject, Fetcher: r.fetches, Clock: r.clock.Now,
		Logger: zerolog.New(r.logs), Metrics: r.metrics, PublishTimeout: time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	mux := http.NewServeMux()
	mux.Handle("/webhooks/{vendor}", rcv)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return rcv, srv
}

func (r *rig) url(vendor string) string { return r.srv.URL + "/webhooks/" + vendor }

// post sends body with headers and returns the status and answer.
func (r *rig) post(vendor string, h http.Header, body []byte) (int, string) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.url(vendor), bytes.NewReader(body))
	require.NoError(r.t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	require.NoError(r.t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// signed are Standard Webhooks headers for body, signed by secrets at ts.
func signed(t *testing.T, id string, ts time.Time, body []byte, secrets ...string) http.Header {
	t.Helper()
	h := http.Header{}
	h.Set(verify.HeaderID, id)
	h.Set(verify.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	var sigs []string
	for _, s := range secrets {
		key, err := verify.DecodeStandardSecret(s)
		require.NoError(t, err)
		sigs = append(sigs, verify.SignStandard(key, id, ts.Unix(), body))
	}
	h.Set(verify.HeaderSignature, joinSpace(sigs))
	return h
}

func joinSpace(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

// stored is every message in the rig's stream, decoded.
type stored struct {
	subject string
	msgID   string
	// traceparent is the message's trace header.
	traceparent string
	env         events.Envelope
	data        events.WebhookReceived
}

func (r *rig) stored() []stored {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, r.stream)
	require.NoError(r.t, err)
	info, err := s.Info(ctx)
	require.NoError(r.t, err)
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var st stored
		st.subject, st.msgID, st.traceparent = m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Header.Get("traceparent")
		require.NoError(r.t, json.Unmarshal(m.Data, &st.env))
		require.NoError(r.t, st.env.Validate())
		if st.env.Type == events.TypeWebhookReceived {
			require.NoError(r.t, json.Unmarshal(st.env.Data, &st.data))
		}
		out = append(out, st)
	}
	return out
}

func (r *rig) count(vendor, outcome string) int {
	return int(testutil.ToFloat64(r.metrics.Deliveries.WithLabelValues(vendor, outcome)))
}
