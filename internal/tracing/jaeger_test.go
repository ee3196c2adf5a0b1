package tracing_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// roleEnv names the role a re-executed test binary plays: the test starts
// the scheduler and the worker as processes of their own (each with its
// own tracer provider and service name, exporting over OTLP as a deployed
// one does) from its own binary.
const roleEnv = "TOKENRELAY_TRACING_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(app.Main(role, os.Args[1:], os.Stdout, os.Stderr, func(ctx context.Context, env *app.Env) error {
			if role == "worker" {
				return app.RunWorker(ctx, env, app.WorkerOptions{})
			}
			return app.RunScheduler(ctx, env)
		}))
	}
	os.Exit(m.Run())
}

// TestRenewalIsOneTraceInJaeger runs a scheduler and a worker exporting to
// a real Jaeger and reads one renewal's trace back through Jaeger's API:
// the scheduler's claim and enqueue, the worker's task, the vendor call and
// its HTTP request, the store commit and the JetStream publish, each the
// child of the one before, across both processes; the event carries the
// trace in its envelope and its NATS headers; no secret or token is in any
// span.
func TestRenewalIsOneTraceInJaeger(t *testing.T) {
	if os.Getenv("TOKENRELAY_JAEGER_TEST") == "" {
		// It builds Jaeger (minutes, the first time): `make test-tracing`
		// runs it, and .ci/run runs that after `make test`.
		t.Skip("set TOKENRELAY_JAEGER_TEST=1 (make test-tracing) to run against a real Jaeger")
	}
	jaeger := testenv.StartJaeger(t)

	sb := sandbox.New(sandbox.Options{RealTokenLifetime: time.Hour})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	clientSecret := rand.Text()
	sb.AddClient("cid-clinic-1", clientSecret)

	db, _ := testenv.RedisDB(t)
	nc, js, _ := testenv.NATS(t)
	stream := strings.ToUpper(testenv.Unique("TRACE_"))
	subjects := testenv.Unique("tr") + "."
	conf := filepath.Join(t.TempDir(), "tokenrelay.yaml")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, `redis: {url: "redis://%s/%d"}
nats: {url: %q, stream: %s, subject_prefix: %q}
http: {addr: "127.0.0.1:0"}
vendors:
  portal: {kind: oauth2, base_url: %q, token_url: %q}
credentials:
  - {id: clinic-1, vendor: portal, client_id: cid-clinic-1, client_secret: "${TRACE_TEST_CLIENT_SECRET}"}
`, testenv.RedisAddr(), db, testenv.NATSURL(), stream, subjects, srv.URL+"/oauth2/", srv.URL+"/oauth2/token"), 0o600))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
	})

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	logs := map[string]*testenv.Buffer{}
	for _, role := range []string{"scheduler", "worker"} {
		cmd := exec.Command(os.Args[0], "-config", conf, "-log-level", "debug")
		logs[role] = &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = logs[role], logs[role]
		cmd.Env = append(os.Environ(), roleEnv+"="+role,
			"TOKENRELAY_SECRET_KEY="+base64.StdEncoding.EncodeToString(key),
			"TRACE_TEST_CLIENT_SECRET="+clientSecret,
			"OTEL_EXPORTER_OTLP_ENDPOINT="+jaeger.OTLPEndpoint,
			"OTEL_BSP_SCHEDULE_DELAY=100", // export within 0.1 s, not 5 s
		)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("%s logs:\n%s", role, logs[role].String())
			}
		})
	}

	// The first renewal's event, as a consumer receives it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var s jetstream.Stream
	require.Eventually(t, func() bool {
		var err error
		s, err = js.Stream(ctx, stream)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the scheduler should create the stream")
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects + events.TypeTokenRenewed + ".>"}})
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(45 * time.Second))
	require.NoError(t, err, "a token.renewed event should be published")
	var env events.Envelope
	require.NoError(t, json.Unmarshal(msg.Data(), &env))
	require.NotEmpty(t, env.TraceParent, "the event should carry its renewal's trace")
	parts := strings.Split(env.TraceParent, "-")
	require.Len(t, parts, 4)
	traceID := parts[1]
	header := msg.Headers().Get("traceparent")
	require.True(t, strings.HasPrefix(header, "00-"+traceID+"-"), "the NATS message should carry the trace in its headers: %q", header)

	// The whole trace, read back from Jaeger.
	want := []struct{ name, service, parent string }{
		{"scheduler.enqueue", "tokenrelay-scheduler", ""},
		{"jobs.refresh", "tokenrelay-worker", "scheduler.enqueue"},
		{"vendor.token", "tokenrelay-worker", "jobs.refresh"},
		{"HTTP POST", "tokenrelay-worker", "vendor.token"},
		{"store.commit", "tokenrelay-worker", "jobs.refresh"},
		{"events.publish", "tokenrelay-scheduler", "store.commit"},
	}
	var (
		spans []testenv.JaegerSpan
		raw   []byte
	)
	require.Eventually(t, func() bool {
		spans, raw, err = jaeger.Trace(traceID)
		return err == nil && len(spans) >= len(want)
	}, 30*time.Second, 200*time.Millisecond, "Jaeger should hold the renewal's %d spans", len(want))
	byName := map[string]testenv.JaegerSpan{}
	byID := map[string]testenv.JaegerSpan{}
	for _, sp := range spans {
		byName[sp.OperationName] = sp
		byID[sp.SpanID] = sp
	}
	for _, w := range want {
		sp, ok := byName[w.name]
		require.True(t, ok, "span %s missing from the trace (have %v)", w.name, names(spans))
		require.Equal(t, w.service, sp.Service, "span %s's service", w.name)
		if w.parent == "" {
			require.Empty(t, sp.Parent(), "span %s should be the root", w.name)
			continue
		}
		require.Equal(t, w.parent, byID[sp.Parent()].OperationName, "span %s's parent", w.name)
	}

	// Nothing secret in any span: the client secret, the tokens issued, in
	// any of the spellings a leak takes.
	forbidden := []string{clientSecret}
	forbidden = append(forbidden, sb.IssuedTokens("cid-clinic-1")...)
	require.NotEmpty(t, sb.IssuedTokens("cid-clinic-1"))
	for _, f := range forbidden {
		for _, spelling := range []string{f, base64.StdEncoding.EncodeToString([]byte(f)), base64.StdEncoding.EncodeToString([]byte("cid-clinic-1:" + f))} {
			require.NotContains(t, string(raw), spelling, "a secret reached a span")
		}
	}
	// A consumer's token.get: the token names the renewal that produced it
	// (its store.commit span), and the service's span, in the consumer's
	// trace, holds no token either.
	// (A consumer installs the W3C propagator, as any otel program does;
	// Setup with no exporter named does only that.)
	_, err = tracing.Setup(ctx, "consumer", func(string) string { return "" })
	require.NoError(t, err)
	ts, err := client.NewTokenSource(nc, "portal", "clinic-1", client.WithSubjectPrefix(subjects))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ts.Close() })
	consumer := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID(randomBytes16()), SpanID: trace.SpanID{1},
		TraceFlags: trace.FlagsSampled, Remote: true})
	tok, err := ts.TokenContext(trace.ContextWithRemoteSpanContext(ctx, consumer))
	require.NoError(t, err)
	link, ok := client.RenewalLink(tok)
	require.True(t, ok, "the token should name its renewal")
	require.Equal(t, traceID, link.SpanContext.TraceID().String(), "the token's link is to the renewal's trace")
	require.Equal(t, byName["store.commit"].SpanID, link.SpanContext.SpanID().String())
	var getRaw []byte
	require.Eventually(t, func() bool {
		var got []testenv.JaegerSpan
		got, getRaw, err = jaeger.Trace(consumer.TraceID().String())
		return err == nil && len(got) > 0
	}, 30*time.Second, 200*time.Millisecond, "Jaeger should hold the token.get span in the consumer's trace")
	require.Contains(t, string(getRaw), "token.get")
	forbidden = append(forbidden, tok.AccessToken)
	for _, f := range forbidden {
		require.NotContains(t, string(getRaw), f, "a secret reached the token.get span")
	}

	// Log lines written inside a span name it.
	require.Contains(t, logs["worker"].String(), `"trace_id":"`+traceID+`"`, "the worker's renewal log line should carry the trace id")
}

func names(spans []testenv.JaegerSpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Service+"/"+s.OperationName)
	}
	return out
}

func randomBytes16() [16]byte {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return b
}
