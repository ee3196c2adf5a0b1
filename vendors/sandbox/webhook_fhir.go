package sandbox

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FHIRSubscription emits the notification bundles of one FHIR subscription
// as Halaxy and FHIR servers send them (R4B: a Bundle of type history whose
// first entry is a SubscriptionStatus): a handshake, heartbeats and event
// notifications, id-only or with the full resource, numbering events with
// eventsSinceSubscriptionStart. Skip loses notifications on purpose, so
// that a receiver's gap detection can be tested. Safe for concurrent use.
type FHIRSubscription struct {
	id, topic string
	clock     func() time.Time

	mu     sync.Mutex
	events int64
}

// NewFHIRSubscription makes a subscription with id (its reference is
// "Subscription/<id>") on topic; clock stamps the bundles (nil: time.Now).
func NewFHIRSubscription(id, topic string, clock func() time.Time) *FHIRSubscription {
	if clock == nil {
		clock = time.Now
	}
	return &FHIRSubscription{id: id, topic: topic, clock: clock}
}

// Events is eventsSinceSubscriptionStart so far.
func (f *FHIRSubscription) Events() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events
}

// Handshake is the bundle a server sends when the subscription starts.
func (f *FHIRSubscription) Handshake() []byte {
	return f.bundle("handshake", "requested", f.Events(), nil, nil)
}

// Heartbeat is the bundle sent when nothing happened for a while.
func (f *FHIRSubscription) Heartbeat() []byte {
	return f.bundle("heartbeat", "active", f.Events(), nil, nil)
}

// Skip counts n events whose notifications are never sent.
func (f *FHIRSubscription) Skip(n int) {
	f.mu.Lock()
	f.events += int64(n)
	f.mu.Unlock()
}

// Notify is an event-notification about each focus ("Patient/p-7"), one
// event each. With fullResource the resources are in the bundle; otherwise
// the notification is id-only and the receiver must fetch them.
func (f *FHIRSubscription) Notify(fullResource bool, focus ...string) []byte {
	f.mu.Lock()
	first := f.events + 1
	f.events += int64(len(focus))
	last := f.events
	f.mu.Unlock()
	var evs []map[string]any
	var resources []map[string]any
	for i, ref := range focus {
		evs = append(evs, map[string]any{
			"eventNumber": strconv.FormatInt(first+int64(i), 10),
			"timestamp":   f.clock().UTC().Format(time.RFC3339),
			"focus":       map[string]string{"reference": ref},
		})
		if typ, id, ok := strings.Cut(ref, "/"); ok && fullResource {
			resources = append(resources, map[string]any{"resourceType": typ, "id": id,
				"meta": map[string]string{"lastUpdated": f.clock().UTC().Format(time.RFC3339)}})
		}
	}
	return f.bundle("event-notification", "active", last, evs, resources)
}

func (f *FHIRSubscription) bundle(typ, status string, since int64, evs []map[string]any, resources []map[string]any) []byte {
	st := map[string]any{
		"resourceType":                 "SubscriptionStatus",
		"status":                       status,
		"type":                         typ,
		"eventsSinceSubscriptionStart": strconv.FormatInt(since, 10),
		"subscription":                 map[string]string{"reference": "Subscription/" + f.id},
		"topic":                        f.topic,
	}
	if len(evs) > 0 {
		st["notificationEvent"] = evs
	}
	entries := []map[string]any{{"fullUrl": "urn:uuid:" + NewWebhookID(), "resource": st}}
	for _, r := range resources {
		entries = append(entries, map[string]any{"fullUrl": r["resourceType"].(string) + "/" + r["id"].(string), "resource": r})
	}
	b, _ := json.Marshal(map[string]any{
		"resourceType": "Bundle", "type": "history",
		"timestamp": f.clock().UTC().Format(time.RFC3339), "entry": entries,
	})
	return b
}
