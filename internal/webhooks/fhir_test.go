package webhooks_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

func TestFHIRSubscriptionNotifications(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	sub := sandbox.NewFHIRSubscription("sub-1", "https://au-api.halaxy.com/main/topics/patient", r.clock.Now)
	h := http.Header{"Authorization": {halaxyAuth}}
	post := func(body []byte) int {
		t.Helper()
		status, answer := r.post("halaxy-au", h, body)
		require.Equal(t, 200, status, answer)
		return status
	}

	// Handshake and heartbeat: answered, not relayed, counted as life.
	post(sub.Handshake())
	post(sub.Heartbeat())
	require.Empty(t, r.stored())
	require.Equal(t, 1, r.count("halaxy-au", webhooks.OutcomeHandshake))
	require.Equal(t, 1, r.count("halaxy-au", webhooks.OutcomeHeartbeat))

	// Full resource: relayed, nothing to fetch.
	post(sub.Notify(true, "Patient/p-1"))
	require.Len(t, r.stored(), 1)
	require.Empty(t, r.fetches.all())

	// Id-only: relayed, and each resource fetched with the fetch credential.
	idOnly := sub.Notify(false, "Patient/p-2", "Patient/p-3")
	post(idOnly)
	got := r.stored()
	require.Len(t, got, 2)
	require.Equal(t, r.subject+"webhook.halaxy-au.Patient", got[1].subject)
	require.Equal(t, "fhir:Subscription/sub-1:3", got[1].data.DeliveryID)
	fetches := r.fetches.all()
	require.Len(t, fetches, 2)
	for i, path := range []string{"Patient/p-2", "Patient/p-3"} {
		require.Equal(t, "halaxy-au", fetches[i].Vendor)
		require.Equal(t, "clinic-42", fetches[i].Credential)
		require.Equal(t, http.MethodGet, fetches[i].Method)
		require.Equal(t, path, fetches[i].Path)
		require.NotEmpty(t, fetches[i].IdempotencyKey)
	}

	// A redelivery of the id-only bundle: acknowledged, not relayed or
	// fetched again.
	post(idOnly)
	require.Len(t, r.stored(), 2)
	require.Len(t, r.fetches.all(), 2)

	// Two notifications lost (events 4 and 5): the next one reveals the gap
	// and a catch-up fetch asks for exactly those.
	sub.Skip(2)
	post(sub.Notify(true, "Patient/p-6"))
	fetches = r.fetches.all()
	require.Len(t, fetches, 3)
	require.Equal(t, "Subscription/sub-1/$events", fetches[2].Path)
	require.Equal(t, url.Values{"eventsSinceNumber": {"4"}, "eventsUntilNumber": {"5"}, "content": {"id-only"}}, fetches[2].Query)

	// A heartbeat after a lost notification reveals it too.
	sub.Skip(1)
	post(sub.Heartbeat())
	fetches = r.fetches.all()
	require.Len(t, fetches, 4)
	require.Equal(t, url.Values{"eventsSinceNumber": {"7"}, "eventsUntilNumber": {"7"}, "content": {"id-only"}}, fetches[3].Query)
	// ... once.
	post(sub.Heartbeat())
	require.Len(t, r.fetches.all(), 4)
	require.Len(t, r.stored(), 3)
}

func TestFetchFailureIsRetriedByTheVendor(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	sub := sandbox.NewFHIRSubscription("sub-2", "", r.clock.Now)
	h := http.Header{"Authorization": {halaxyAuth}}
	body := sub.Notify(false, "Appointment/a-1")

	r.fetches.mu.Lock()
	r.fetches.fail = true
	r.fetches.mu.Unlock()
	status, _ := r.post("halaxy-au", h, body)
	require.Equal(t, http.StatusServiceUnavailable, status)

	r.fetches.mu.Lock()
	r.fetches.fail = false
	r.fetches.mu.Unlock()
	status, _ = r.post("halaxy-au", h, body)
	require.Equal(t, 200, status)
	require.Len(t, r.fetches.all(), 1)
	// The retry re-published with the same Nats-Msg-Id: one event.
	require.Len(t, r.stored(), 1)
}
