package devmode

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

var renewedCount = regexp.MustCompile(`token\.renewed (\d+)`)

// TestRunWholePipelineInProcess is make run in miniature: embedded Redis and
// NATS, the sandbox, scheduler and worker; renewals show in the view and
// cancelling stops everything cleanly.
func TestRunWholePipelineInProcess(t *testing.T) {
	t.Parallel()
	out := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Credentials: 4, TokenLifetime: 2 * time.Second, Out: out, SummaryEvery: 200 * time.Millisecond,
			WebhookEvery: 300 * time.Millisecond,
			LogFile:      filepath.Join(t.TempDir(), "dev.log"), Lookup: func(string) (string, bool) { return "", false },
		})
	}()
	// Four credentials, each renewed at least twice after its first token.
	require.Eventually(t, func() bool {
		m := renewedCount.FindAllStringSubmatch(out.String(), -1)
		if len(m) == 0 {
			return false
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n >= 12
	}, 60*time.Second, 50*time.Millisecond, "the live view should show renewals:\n%s", out.String())
	// The sandbox's Halaxy pushes id-only notifications: each is relayed,
	// and the patient it names is fetched through a request job.
	require.Eventually(t, func() bool {
		s := out.String()
		return strings.Contains(s, "webhook.received ") && strings.Contains(s, "request.completed ")
	}, 30*time.Second, 50*time.Millisecond, "the live view should show relayed webhooks and their fetches:\n%s", out.String())
	stopRun(t, cancel, done)
	require.Contains(t, out.String(), "stopped cleanly")
	require.Contains(t, out.String(), "clinic-01")
	require.Contains(t, out.String(), "patient-04")
}

func TestRenderShowsStateExpiryAndLastEvent(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	rows := []store.Summary{
		{ID: "clinic-02", Vendor: "halaxy-au", State: store.StateActive, Generation: 7,
			ExpiresAt: now.Add(4 * time.Second), NextRefresh: now.Add(time.Second)},
		{ID: "clinic-01", Vendor: "halaxy-au", State: store.StateRevoked, Generation: 3, ExpiresAt: now.Add(-time.Second)},
	}
	last := func(id string) (LastEvent, bool) {
		if id == "clinic-02" {
			return LastEvent{Type: "token.renewed", At: now.Add(-2 * time.Second), Note: "gen 7"}, true
		}
		return LastEvent{}, false
	}
	var b strings.Builder
	Render(&b, now, rows, last, map[string]int{"token.renewed": 9, "key.revoked": 1}, "footer")
	lines := strings.Split(b.String(), "\n")
	require.Contains(t, lines[3], "clinic-01", "rows are sorted by credential")
	require.Contains(t, lines[3], "EXPIRED")
	require.Contains(t, lines[4], "clinic-02")
	require.Contains(t, lines[4], "4s")
	require.Contains(t, lines[4], "token.renewed")
	require.Contains(t, lines[4], "(gen 7)")
	require.Contains(t, b.String(), "key.revoked 1")
	require.Contains(t, b.String(), "token.renewed 9")
}

// TestRunSendsTracesWhereTold is make run-traced without the Jaeger: with
// OTEL_EXPORTER_OTLP_ENDPOINT naming a collector, renewals' spans reach
// it over OTLP/HTTP and the view prints where the traces can be seen.
func TestRunSendsTracesWhereTold(t *testing.T) {
	var mu sync.Mutex
	var received []byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			mu.Lock()
			received = append(received, body...)
			mu.Unlock()
		}
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	out := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Credentials: 2, TokenLifetime: 2 * time.Second, Out: out, SummaryEvery: 200 * time.Millisecond, WebhookEvery: -1,
			LogFile: filepath.Join(t.TempDir(), "dev.log"), TracesURL: "http://127.0.0.1:1/search",
			Lookup: func(k string) (string, bool) {
				if k == "OTEL_EXPORTER_OTLP_ENDPOINT" {
					return collector.URL, true
				}
				return "", false
			},
		})
	}()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Contains(received, []byte("scheduler.enqueue")) && bytes.Contains(received, []byte("jobs.refresh")) &&
			bytes.Contains(received, []byte("tokenrelay-dev"))
	}, 60*time.Second, 50*time.Millisecond, "renewals' spans should reach the OTLP endpoint")
	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), "traces (each renewal one trace): http://127.0.0.1:1/search")
	},
		10*time.Second, 50*time.Millisecond, "the view should print where the traces are:\n%s", out.String())
	stopRun(t, cancel, done)
}

// stopRun is Ctrl-C: Run must return nil within 30 s.
func stopRun(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("dev mode did not stop within 30s of Ctrl-C")
	}
}
