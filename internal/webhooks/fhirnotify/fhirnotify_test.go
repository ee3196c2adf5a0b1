package fhirnotify_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/webhooks/fhirnotify"
)

const (
	handshakeR4B = `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus",
		"status":"requested","type":"handshake","eventsSinceSubscriptionStart":"0",
		"subscription":{"reference":"Subscription/sub-1"},"topic":"https://halaxy.com/topics/patient"}}]}`
	heartbeatR5 = `{"resourceType":"Bundle","type":"subscription-notification","entry":[{"resource":{"resourceType":"SubscriptionStatus",
		"status":"active","type":"heartbeat","eventsSinceSubscriptionStart":"41","subscription":{"reference":"Subscription/sub-1"}}}]}`
	idOnly = `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus",
		"status":"active","type":"event-notification","eventsSinceSubscriptionStart":"43",
		"subscription":{"reference":"https://au-api.halaxy.com/main/Subscription/sub-1"},
		"notificationEvent":[{"eventNumber":"42","focus":{"reference":"Patient/p-7"}},{"eventNumber":"43","focus":{"reference":"Patient/p-8/_history/3"}}]}}]}`
	fullResource = `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus",
		"type":"event-notification","eventsSinceSubscriptionStart":7,
		"subscription":{"reference":"Subscription/sub-2"},
		"notificationEvent":[{"eventNumber":7,"focus":{"reference":"https://x.example/fhir/Appointment/a1"}}]}},
		{"fullUrl":"https://x.example/fhir/Appointment/a1","resource":{"resourceType":"Appointment","id":"a1"}}]}`
	r4Parameters = `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Parameters","parameter":[
		{"name":"subscription","valueReference":{"reference":"Subscription/r4"}},
		{"name":"topic","valueCanonical":"http://example.org/topic"},
		{"name":"type","valueCode":"event-notification"},
		{"name":"events-since-subscription-start","valueString":"3"},
		{"name":"notification-event","part":[{"name":"event-number","valueString":"3"},{"name":"focus","valueReference":{"reference":"Encounter/e1"}}]}]}}]}`
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want fhirnotify.Notification
		data bool
	}{
		{"R4B handshake", handshakeR4B, fhirnotify.Notification{
			Type: "handshake", Subscription: "Subscription/sub-1", Topic: "https://halaxy.com/topics/patient",
		}, false},
		{"R5 heartbeat", heartbeatR5, fhirnotify.Notification{
			Type: "heartbeat", Subscription: "Subscription/sub-1", EventsSinceSubscriptionStart: 41,
		}, false},
		{"id-only events", idOnly, fhirnotify.Notification{
			Type: "event-notification", Subscription: "https://au-api.halaxy.com/main/Subscription/sub-1", EventsSinceSubscriptionStart: 43,
			Events: []fhirnotify.Event{{Number: 42, Focus: "Patient/p-7"}, {Number: 43, Focus: "Patient/p-8/_history/3"}},
		}, true},
		{"full resource, numbers as JSON numbers", fullResource, fhirnotify.Notification{
			Type: "event-notification", Subscription: "Subscription/sub-2", EventsSinceSubscriptionStart: 7,
			Events: []fhirnotify.Event{{Number: 7, Focus: "https://x.example/fhir/Appointment/a1", Included: true}},
		}, true},
		{"R4 backport Parameters", r4Parameters, fhirnotify.Notification{
			Type: "event-notification", Subscription: "Subscription/r4", Topic: "http://example.org/topic", EventsSinceSubscriptionStart: 3,
			Events: []fhirnotify.Event{{Number: 3, Focus: "Encounter/e1"}},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, err := fhirnotify.Parse([]byte(tt.body))
			require.NoError(t, err)
			require.Equal(t, tt.want, n)
			require.Equal(t, tt.data, n.IsData())
		})
	}
}

func TestEventNumbersAndResourceType(t *testing.T) {
	t.Parallel()
	n, err := fhirnotify.Parse([]byte(idOnly))
	require.NoError(t, err)
	require.EqualValues(t, 42, n.FirstEventNumber())
	require.EqualValues(t, 43, n.LastEventNumber())
	require.Equal(t, "Patient", n.ResourceType())

	// Without event numbers, the count says where the bundle starts.
	n = fhirnotify.Notification{EventsSinceSubscriptionStart: 10, Events: []fhirnotify.Event{{Focus: "Patient/1"}, {Focus: "Patient/2"}}}
	require.EqualValues(t, 9, n.FirstEventNumber())
	require.EqualValues(t, 10, n.LastEventNumber())
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"not JSON":           `{"resourceType":`,
		"negative count":     `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus","eventsSinceSubscriptionStart":"-1"}}]}`,
		"count not a number": `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus","eventsSinceSubscriptionStart":"many"}}]}`,
	} {
		_, err := fhirnotify.Parse([]byte(body))
		require.Error(t, err, name)
		require.NotErrorIs(t, err, fhirnotify.ErrNotNotification, name)
	}
	for name, body := range map[string]string{
		"plain JSON":        `{"type":"patient.updated"}`,
		"searchset bundle":  `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"1"}}]}`,
		"no status first":   `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"Patient","id":"1"}}]}`,
		"empty history":     `{"resourceType":"Bundle","type":"history"}`,
		"array":             `[1,2]`,
		"status not object": `{"resourceType":"Bundle","type":"history","entry":[{"resource":"x"}]}`,
	} {
		_, err := fhirnotify.Parse([]byte(body))
		require.ErrorIs(t, err, fhirnotify.ErrNotNotification, name)
	}
}

func TestSplitReference(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string][2]string{
		"Patient/123":                          {"Patient", "123"},
		"https://h.example/fhir/Patient/a.b-1": {"Patient", "a.b-1"},
		"Patient/123/_history/4":               {"Patient", "123"},
	} {
		typ, id, ok := fhirnotify.SplitReference(ref)
		require.True(t, ok, ref)
		require.Equal(t, want, [2]string{typ, id}, ref)
	}
	for _, ref := range []string{"", "Patient", "patient/1", "Patient/1 2", "Patient/../x", "#contained"} {
		_, _, ok := fhirnotify.SplitReference(ref)
		require.False(t, ok, ref)
	}
}

// FuzzParse: any body is parsed or refused without panicking, and what is
// parsed holds only well-formed references and non-negative numbers.
func FuzzParse(f *testing.F) {
	for _, s := range []string{handshakeR4B, heartbeatR5, idOnly, fullResource, r4Parameters, `{}`, `null`, `{"resourceType":"Bundle"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := fhirnotify.Parse(body)
		if err != nil {
			return
		}
		if n.Type == "" || n.EventsSinceSubscriptionStart < 0 || len(n.Events) > 1000 {
			t.Fatalf("bad notification %+v", n)
		}
		for _, e := range n.Events {
			if e.Number < 0 {
				t.Fatalf("negative event number %d", e.Number)
			}
			if typ, id, ok := fhirnotify.SplitReference(e.Focus); ok && (typ == "" || id == "") {
				t.Fatalf("empty reference part in %q", e.Focus)
			}
		}
		if n.FirstEventNumber() < 0 || n.LastEventNumber() < n.EventsSinceSubscriptionStart {
			t.Fatalf("bad event numbers %+v", n)
		}
	})
}
