package webhooks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestSandboxDeliveriesOfEveryKind sends what the sandbox can send, genuine
// and tampered, to the receiver.
func TestSandboxDeliveriesOfEveryKind(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	newSender := func(vendor, scheme, header string, secrets ...string) *sandbox.WebhookSender {
		s, err := sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{URL: r.url(vendor), Scheme: scheme, Header: header,
			Secrets: secrets, Clock: r.clock.Now, Compress: 1e6, HTTPClient: r.client})
		require.NoError(t, err)
		return s
	}
	standard := newSender("healthsync", sandbox.SchemeStandardWebhooks, "", hsSecret)
	rotating := newSender("healthsync", sandbox.SchemeStandardWebhooks, "", hsOld, hsSecret)
	halaxy := newSender("halaxy-au", sandbox.SchemeToken, "Authorization", halaxyAuth)
	redox := newSender("redox-prod", sandbox.SchemeToken, "verification-token", redoxToken)
	body := []byte(`{"type":"patient.updated"}`)

	// Genuine ones, of each kind.
	for name, s := range map[string]*sandbox.WebhookSender{"standard": standard, "rotating": rotating, "halaxy": halaxy, "redox": redox} {
		res, err := s.Send(ctx, sandbox.Delivery{Body: body})
		require.NoError(t, err, name)
		require.True(t, res.Delivered, name)
		require.Len(t, res.Attempts, 1, name)
	}
	for _, get := range []bool{false, true} {
		ok, err := redox.VerifyEndpoint(ctx, get)
		require.NoError(t, err)
		require.True(t, ok, "redox endpoint verification (GET %v)", get)
	}
	require.Len(t, r.stored(), 4) // handshakes are not relayed

	// Tampered ones.
	delivered, err := standard.Send(ctx, sandbox.Delivery{ID: "msg_replayed", Body: body})
	require.NoError(t, err)
	require.True(t, delivered.Delivered)
	before := len(r.stored())
	tests := []struct {
		name   string
		s      *sandbox.WebhookSender
		how    sandbox.Tamper
		status int
	}{
		{"forged", standard, sandbox.TamperForged, 401},
		{"unsigned", standard, sandbox.TamperUnsigned, 401},
		{"stale", standard, sandbox.TamperStale, 401},
		{"from the future", standard, sandbox.TamperFuture, 401},
		{"oversized", standard, sandbox.TamperOversized, 413},
		{"malformed", standard, sandbox.TamperMalformed, 400},
		{"replayed", standard, sandbox.TamperReplay, 200},
		{"forged token", halaxy, sandbox.TamperForged, 401},
		{"no token", redox, sandbox.TamperUnsigned, 401},
	}
	for _, tt := range tests {
		id := ""
		if tt.how == sandbox.TamperReplay {
			id = "msg_replayed"
		}
		status, err := tt.s.SendTampered(ctx, sandbox.Delivery{ID: id, Body: body}, tt.how)
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.status, status, tt.name)
	}
	require.Len(t, r.stored(), before, "nothing tampered was relayed, the replay included")
	require.Equal(t, 1, r.count("healthsync", webhooks.OutcomeDuplicate))
}

// TestSandboxRetriesOnTheStandardSchedule: a delivery refused with 503
// twice is retried after 5 s and 5 min (compressed), and then stops.
func TestSandboxRetriesOnTheStandardSchedule(t *testing.T) {
	t.Parallel()
	attempts := 0
	srv := http.NewServeMux()
	srv.HandleFunc("POST /hook", func(w http.ResponseWriter, _ *http.Request) {
		attempts++
		if attempts <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ts := newLocalServer(t, srv)
	s, err := sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{URL: ts + "/hook", Scheme: sandbox.SchemeNone, Compress: 1e5})
	require.NoError(t, err)
	res, err := s.Send(context.Background(), sandbox.Delivery{Body: []byte(`{}`)})
	require.NoError(t, err)
	require.True(t, res.Delivered)
	require.Equal(t, []sandbox.Attempt{{Status: 503}, {Status: 503}, {Status: 204}}, res.Attempts)

	// A receiver that never answers 2xx gets the whole schedule.
	never := http.NewServeMux()
	never.HandleFunc("POST /hook", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	s, err = sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{URL: newLocalServer(t, never) + "/hook", Scheme: sandbox.SchemeNone, Compress: 1e6})
	require.NoError(t, err)
	res, err = s.Send(context.Background(), sandbox.Delivery{Body: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, res.Delivered)
	require.Len(t, res.Attempts, len(sandbox.StandardWebhooksSchedule))
}

func newLocalServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSandboxWebhookControl drives the sender over the sandbox's control
// endpoints, as another process would.
func TestSandboxWebhookControl(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	sb := sandbox.New(sandbox.Options{Clock: r.clock.Now})
	ctl := newLocalServer(t, sb.Handler()) + sandbox.ControlPath + "webhooks/"
	send := func(req string) map[string]any {
		t.Helper()
		resp, err := r.client.Post(ctl+"send", "application/json", strings.NewReader(req))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	target := `"url":"` + r.url("halaxy-au") + `","scheme":"token","header":"Authorization","secrets":["` + halaxyAuth + `"]`
	require.Equal(t, true, send(`{` + target + `,"fhir":{"subscription":"s1","kind":"handshake"}}`)["delivered"])
	require.Equal(t, true, send(`{` + target + `,"fhir":{"subscription":"s1","kind":"notify","focus":["Patient/1"],"full_resource":true}}`)["delivered"])
	require.Equal(t, []any{401.0}, send(`{` + target + `,"body":{"a":1},"tamper":"forged"}`)["attempts"])

	resp, err := r.client.Post(ctl+"stop", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	out := send(`{` + target + `,"fhir":{"subscription":"s1","kind":"heartbeat"}}`)
	require.Equal(t, false, out["delivered"])
	require.Contains(t, out["error"], "stopped")
	resp, err = r.client.Post(ctl+"resume", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, true, send(`{` + target + `,"fhir":{"subscription":"s1","kind":"heartbeat"}}`)["delivered"])

	require.Len(t, r.stored(), 1)
	require.Equal(t, 1, r.count("halaxy-au", webhooks.OutcomeHandshake))
	require.Equal(t, 1, r.count("halaxy-au", webhooks.OutcomeHeartbeat))
}
