package webhooks_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/internal/webhooks/verify"
)

func TestDeliveryOutcomes(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	body := []byte(`{"type":"patient.updated","data":{"id":"p1"}}`)
	halaxy := func(v string) http.Header {
		h := http.Header{}
		if v != "" {
			h.Set("Authorization", v)
		}
		return h
	}
	tests := []struct {
		name, vendor string
		h            http.Header
		body         []byte
		status       int
		outcome      string
		published    bool
	}{
		{"standard webhooks, genuine", "healthsync", signed(t, "msg_a", start, body, hsSecret), body, 200, webhooks.OutcomeAccepted, true},
		{"standard webhooks, signed by the previous secret", "healthsync", signed(t, "msg_b", start, body, hsOld), body, 200, webhooks.OutcomeAccepted, true},
		{"standard webhooks, forged", "healthsync", signed(t, "msg_c", start, body, "whsec_"+strings.Repeat("A", 24)), body, 401, webhooks.OutcomeBadSignature, false},
		{"standard webhooks, no signature", "healthsync", func() http.Header {
			h := signed(t, "msg_d", start, body, hsSecret)
			h.Del(verify.HeaderSignature)
			return h
		}(), body, 401, webhooks.OutcomeBadSignature, false},
		{"standard webhooks, stale", "healthsync", signed(t, "msg_e", start.Add(-10*time.Minute), body, hsSecret), body, 401, webhooks.OutcomeStale, false},
		{"standard webhooks, from the future", "healthsync", signed(t, "msg_f", start.Add(10*time.Minute), body, hsSecret), body, 401, webhooks.OutcomeStale, false},
		{"standard webhooks, signed but not JSON", "healthsync", signed(t, "msg_g", start, []byte("{nope"), hsSecret), []byte("{nope"), 400, webhooks.OutcomeMalformed, false},
		{"halaxy static header", "halaxy-au", halaxy(halaxyAuth), []byte(`{"resourceType":"Patient","id":"1"}`), 200, webhooks.OutcomeAccepted, true},
		{"halaxy wrong header", "halaxy-au", halaxy("guess"), body, 401, webhooks.OutcomeBadSignature, false},
		{"halaxy no header", "halaxy-au", halaxy(""), body, 401, webhooks.OutcomeBadSignature, false},
		{"redox verification-token", "redox-prod", http.Header{"Verification-Token": {redoxToken}},
			[]byte(`{"Meta":{"DataModel":"PatientAdmin","EventType":"Arrival"}}`), 200, webhooks.OutcomeAccepted, true},
		{"redox wrong token", "redox-prod", http.Header{"Verification-Token": {"nope"}}, body, 401, webhooks.OutcomeBadSignature, false},
		{"explicitly unverified", "open", nil, []byte(`{"event":"ping"}`), 200, webhooks.OutcomeAccepted, true},
		{"oversized", "open", nil, []byte(`{"pad":"` + strings.Repeat("x", 300) + `"}`), 413, webhooks.OutcomeTooLarge, false},
		{"empty body", "open", nil, nil, 400, webhooks.OutcomeMalformed, false},
		{"vendor with webhooks off", "closed", nil, body, 404, webhooks.OutcomeUnknownVendor, false},
		{"unknown vendor", "nobody", nil, body, 404, webhooks.OutcomeUnknownVendor, false},
	}
	for _, tt := range tests {
		before := len(r.stored())
		status, answer := r.post(tt.vendor, tt.h, tt.body)
		require.Equal(t, tt.status, status, "%s: %s", tt.name, answer)
		require.NotEmpty(t, strings.TrimSpace(answer), tt.name)
		after := r.stored()
		if tt.published {
			require.Len(t, after, before+1, tt.name)
			require.Equal(t, tt.body, after[len(after)-1].data.Body, tt.name)
		} else {
			require.Len(t, after, before, tt.name)
		}
	}
	require.Equal(t, 2, r.count("healthsync", webhooks.OutcomeAccepted))
	require.Equal(t, 2, r.count("healthsync", webhooks.OutcomeBadSignature))
	require.Equal(t, 2, r.count("healthsync", webhooks.OutcomeStale))
	require.Equal(t, 1, r.count("open", webhooks.OutcomeTooLarge))
	require.Equal(t, 2, r.count("unknown", webhooks.OutcomeUnknownVendor))

	// Subjects and envelopes.
	subjects := map[string]bool{}
	for _, s := range r.stored() {
		subjects[s.subject] = true
		require.Equal(t, events.TypeWebhookReceived, s.env.Type)
		require.Equal(t, s.env.ID, s.msgID)
		require.Equal(t, strings.TrimPrefix(s.subject, r.subject), s.env.Subject)
	}
	require.Equal(t, map[string]bool{
		r.subject + "webhook.healthsync.patient_updated":      true,
		r.subject + "webhook.halaxy-au.Patient":               true,
		r.subject + "webhook.redox-prod.PatientAdmin-Arrival": true,
		r.subject + "webhook.open.ping":                       true,
	}, subjects)

	// No secret in an event or a log line; the signature is kept to replay.
	for _, s := range r.stored() {
		raw, _ := s.env.Data.MarshalJSON()
		for _, sec := range []string{halaxyAuth, redoxToken, hsSecret, hsOld} {
			require.NotContains(t, string(raw), sec)
		}
		if s.data.Vendor == "healthsync" {
			require.NotEmpty(t, s.data.Headers["webhook-signature"])
			require.NotEmpty(t, s.data.Headers["webhook-id"])
		}
		require.NotContains(t, s.data.Headers, "authorization")
		require.NotContains(t, s.data.Headers, "verification-token")
	}
	logs := r.logs.String()
	for _, sec := range []string{halaxyAuth, redoxToken, hsSecret, "patient.updated", "guess"} {
		require.NotContains(t, logs, sec)
	}
}

func TestRedeliveryAnHourLaterIsPublishedOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	body := []byte(`{"type":"appointment.created","data":{"id":"a1"}}`)
	status, _ := r.post("healthsync", signed(t, "msg_once", r.clock.Now(), body, hsSecret), body)
	require.Equal(t, 200, status)

	// The vendor did not get our answer and retries an hour later, signing
	// again with a fresh timestamp: acknowledged, not published again.
	r.clock.Advance(time.Hour)
	status, answer := r.post("healthsync", signed(t, "msg_once", r.clock.Now(), body, hsSecret), body)
	require.Equal(t, 200, status)
	require.Contains(t, answer, "already received")
	// Redox and Halaxy have no delivery id: the body is the id.
	h := http.Header{"Authorization": {halaxyAuth}}
	for range 2 {
		status, _ = r.post("halaxy-au", h, []byte(`{"resourceType":"Patient","id":"7"}`))
		require.Equal(t, 200, status)
		r.clock.Advance(time.Hour)
	}

	got := r.stored()
	require.Len(t, got, 2)
	require.Equal(t, "id:msg_once", got[0].data.DeliveryID)
	require.Equal(t, webhooks.EventID("healthsync", "id:msg_once"), got[0].env.ID)
	require.Equal(t, 2, r.count("healthsync", webhooks.OutcomeDuplicate)+r.count("halaxy-au", webhooks.OutcomeDuplicate))
}

func TestSecretRotationWithTwoSignatures(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	body := []byte(`{"type":"invoice.paid"}`)
	status, _ := r.post("healthsync", signed(t, "msg_rot", start, body, hsOld, hsSecret), body)
	require.Equal(t, 200, status)
	// A signature by an unknown secret beside a good one passes too.
	status, _ = r.post("healthsync", signed(t, "msg_rot2", start, body, "whsec_"+strings.Repeat("B", 24), hsSecret), body)
	require.Equal(t, 200, status)
	require.Len(t, r.stored(), 2)
}

func TestRedoxEndpointVerification(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	status, answer := r.post("redox-prod", nil, []byte(`{"verification-token":"`+redoxToken+`","challenge":"2e73f864-a0e9-4764-a7d5-91fe5836db22"}`))
	require.Equal(t, 200, status)
	require.Equal(t, "2e73f864-a0e9-4764-a7d5-91fe5836db22", answer)

	q := url.Values{"verification-token": {redoxToken}, "challenge": {"cc2f1bdf"}}
	resp, err := r.client.Get(r.url("redox-prod") + "?" + q.Encode())
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "cc2f1bdf", string(b))

	status, answer = r.post("redox-prod", nil, []byte(`{"verification-token":"wrong","challenge":"x"}`))
	require.Equal(t, 401, status)
	require.NotContains(t, answer, "x\n")
	q.Set("verification-token", "wrong")
	resp, err = r.client.Get(r.url("redox-prod") + "?" + q.Encode())
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 401, resp.StatusCode)

	// Handshakes are not data.
	require.Empty(t, r.stored())
	require.Equal(t, 2, r.count("redox-prod", webhooks.OutcomeHandshake))
	// Only Redox answers handshakes: a Halaxy GET is refused.
	resp, err = r.client.Get(r.url("halaxy-au") + "?challenge=x")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestVendorsFromConfigLeavesNoneOut(t *testing.T) {
	t.Parallel()
	vs, unverified, err := webhooks.VendorsFromConfig(testVendors())
	require.NoError(t, err)
	require.NotContains(t, vs, "closed")
	require.Contains(t, vs, "open")
	require.Equal(t, []string{"open"}, unverified)
	require.IsType(t, verify.None{}, vs["open"].Verifier)
	require.NotNil(t, vs["redox-prod"].Handshake)
	require.Nil(t, vs["halaxy-au"].Handshake)
}

// TestEventCanBeReplayed: a webhook.received event keeps the raw body and
// the headers that matter, so that the delivery can be verified (and
// replayed) again from the stream alone.
func TestEventCanBeReplayed(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	body := []byte("{\n  \"type\": \"patient.updated\",\n  \"data\": {\"id\": \"p9\"}\n}")
	status, _ := r.post("healthsync", signed(t, "msg_replay", start, body, hsSecret), body)
	require.Equal(t, 200, status)
	got := r.stored()
	require.Len(t, got, 1)
	ev := got[0].data
	require.Equal(t, body, ev.Body, "the body byte for byte, whitespace included")
	h := http.Header{}
	for k, v := range ev.Headers {
		h.Set(k, v)
	}
	v, err := verify.NewStandardWebhooks([]string{hsSecret}, 0)
	require.NoError(t, err)
	require.NoError(t, v.Verify(h, ev.Body, ev.ReceivedAt))
}
