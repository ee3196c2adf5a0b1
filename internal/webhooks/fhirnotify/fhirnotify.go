// Package fhirnotify reads FHIR subscription notifications (R4B and R5
// SubscriptionStatus bundles, and the R4 backport's Parameters form), as
// Halaxy and FHIR servers push them: whether a bundle is a handshake, a
// heartbeat or an event notification, which subscription it belongs to,
// its eventsSinceSubscriptionStart, and the events with the resources they
// are about, so that a receiver can drop the first two, fetch what an
// id-only notification names, and notice a gap in the event numbers.
package fhirnotify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Notification types (SubscriptionStatus.type).
const (
	TypeHandshake         = "handshake"
	TypeHeartbeat         = "heartbeat"
	TypeEventNotification = "event-notification"
	TypeQueryStatus       = "query-status"
	TypeQueryEvent        = "query-event"
)

// ErrNotNotification: the body is JSON but not a subscription notification
// bundle. The receiver relays such a body as an ordinary webhook.
var ErrNotNotification = errors.New("fhirnotify: not a subscription notification bundle")

// ErrNotJSON: the body is not JSON at all.
var ErrNotJSON = errors.New("fhirnotify: body is not JSON")

// maxEvents bounds the events read from one bundle.
const maxEvents = 1000

// Notification is what a receiver needs from one notification bundle.
type Notification struct {
	// Type is one of the Type* constants (TypeEventNotification when the
	// status leaves it out).
	Type string
	// Subscription is the Subscription reference ("Subscription/123").
	Subscription string
	// Topic is the subscription topic's canonical URL, if given.
	Topic string
	// EventsSinceSubscriptionStart is the number of events the
	// subscription has produced, this bundle's included; 0 when absent.
	EventsSinceSubscriptionStart int64
	// Events are the notified events, in the bundle's order.
	Events []Event
}

// Event is one notificationEvent.
type Event struct {
	// Number is its eventNumber (0 when absent).
	Number int64
	// Focus is the reference of the resource it is about
	// ("Patient/123", possibly absolute), "" when none.
	Focus string
	// Included says the focus resource itself is in the bundle (a
	// full-resource notification); otherwise it must be fetched.
	Included bool
}

// IsData says whether the notification carries events that are data (not
// a handshake or a heartbeat).
func (n Notification) IsData() bool {
	return n.Type == TypeEventNotification || n.Type == TypeQueryEvent
}

// FirstEventNumber is the lowest event number in the bundle, or, without
// event numbers, EventsSinceSubscriptionStart minus the events it carries
// plus one; 0 when neither is known.
func (n Notification) FirstEventNumber() int64 {
	var first int64
	for _, e := range n.Events {
		if e.Number > 0 && (first == 0 || e.Number < first) {
			first = e.Number
		}
	}
	if first == 0 && n.EventsSinceSubscriptionStart > 0 {
		first = n.EventsSinceSubscriptionStart - int64(len(n.Events)) + 1
	}
	return max(first, 0)
}

// LastEventNumber is the highest event number in the bundle, or
// EventsSinceSubscriptionStart; 0 when neither is known.
func (n Notification) LastEventNumber() int64 {
	last := n.EventsSinceSubscriptionStart
	for _, e := range n.Events {
		last = max(last, e.Number)
	}
	return last
}

// ResourceType is the type of the first event's focus ("Patient"), or "".
func (n Notification) ResourceType() string {
	for _, e := range n.Events {
		if t, _, ok := SplitReference(e.Focus); ok {
			return t
		}
	}
	return ""
}

type bundle struct {
	ResourceType string  `json:"resourceType"`
	Type         string  `json:"type"`
	Entry        []entry `json:"entry"`
}

type entry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
}

type resourceHead struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
}

type subscriptionStatus struct {
	ResourceType      string          `json:"resourceType"`
	Type              string          `json:"type"`
	EventsSince       json.RawMessage `json:"eventsSinceSubscriptionStart"`
	Subscription      reference       `json:"subscription"`
	Topic             string          `json:"topic"`
	NotificationEvent []struct {
		EventNumber json.RawMessage `json:"eventNumber"`
		Focus       reference       `json:"focus"`
	} `json:"notificationEvent"`
	Parameter []parameter `json:"parameter"`
}

type reference struct {
	Reference string `json:"reference"`
}

type parameter struct {
	Name           string          `json:"name"`
	ValueString    json.RawMessage `json:"valueString"`
	ValueInteger64 json.RawMessage `json:"valueInteger64"`
	ValueCode      string          `json:"valueCode"`
	ValueCanonical string          `json:"valueCanonical"`
	ValueUri       string          `json:"valueUri"`
	ValueReference reference       `json:"valueReference"`
	Part           []parameter     `json:"part"`
}

// Parse reads a notification bundle. A body that is a FHIR Bundle of type
// history (R4B) or subscription-notification (R5) whose first entry is a
// SubscriptionStatus (or the R4 backport's Parameters) is a notification;
// any other JSON gets ErrNotNotification, and a body that is not JSON a
// syntax error.
func Parse(body []byte) (Notification, error) {
	if !json.Valid(body) {
		return Notification{}, ErrNotJSON
	}
	var b bundle
	if err := json.Unmarshal(body, &b); err != nil {
		return Notification{}, ErrNotNotification // valid JSON of another shape
	}
	if b.ResourceType != "Bundle" || (b.Type != "history" && b.Type != "subscription-notification") || len(b.Entry) == 0 {
		return Notification{}, ErrNotNotification
	}
	var st subscriptionStatus
	if err := json.Unmarshal(b.Entry[0].Resource, &st); err != nil {
		return Notification{}, ErrNotNotification
	}
	var n Notification
	switch st.ResourceType {
	case "SubscriptionStatus":
		n = Notification{Type: st.Type, Subscription: st.Subscription.Reference, Topic: st.Topic}
		since, err := integer64(st.EventsSince)
		if err != nil {
			return Notification{}, fmt.Errorf("fhirnotify: eventsSinceSubscriptionStart: %w", err)
		}
		n.EventsSinceSubscriptionStart = since
		for i, e := range st.NotificationEvent {
			if i == maxEvents {
				break
			}
			num, err := integer64(e.EventNumber)
			if err != nil {
				return Notification{}, fmt.Errorf("fhirnotify: notificationEvent[%d].eventNumber: %w", i, err)
			}
			n.Events = append(n.Events, Event{Number: num, Focus: e.Focus.Reference})
		}
	case "Parameters":
		var err error
		if n, err = fromParameters(st.Parameter); err != nil {
			return Notification{}, err
		}
	default:
		return Notification{}, ErrNotNotification
	}
	if n.Type == "" {
		n.Type = TypeEventNotification
	}
	included := map[string]bool{}
	for _, e := range b.Entry[1:] {
		var h resourceHead
		if len(e.Resource) == 0 || json.Unmarshal(e.Resource, &h) != nil || h.ResourceType == "" {
			continue
		}
		included[h.ResourceType+"/"+h.ID] = true
		if e.FullURL != "" {
			included[e.FullURL] = true
		}
	}
	for i, e := range n.Events {
		t, id, ok := SplitReference(e.Focus)
		n.Events[i].Included = included[e.Focus] || (ok && included[t+"/"+id])
	}
	return n, nil
}

// fromParameters reads the R4 backport's Parameters form.
func fromParameters(params []parameter) (Notification, error) {
	var n Notification
	for _, p := range params {
		switch p.Name {
		case "subscription":
			n.Subscription = p.ValueReference.Reference
		case "topic":
			n.Topic = p.ValueCanonical + p.ValueUri
		case "type":
			n.Type = p.ValueCode
		case "events-since-subscription-start":
			v, err := integer64(firstNonEmpty(p.ValueString, p.ValueInteger64))
			if err != nil {
				return Notification{}, fmt.Errorf("fhirnotify: events-since-subscription-start: %w", err)
			}
			n.EventsSinceSubscriptionStart = v
		case "notification-event":
			if len(n.Events) == maxEvents {
				continue
			}
			var e Event
			for _, part := range p.Part {
				switch part.Name {
				case "event-number":
					v, err := integer64(firstNonEmpty(part.ValueString, part.ValueInteger64))
					if err != nil {
						return Notification{}, fmt.Errorf("fhirnotify: event-number: %w", err)
					}
					e.Number = v
				case "focus":
					e.Focus = part.ValueReference.Reference
				}
			}
			n.Events = append(n.Events, e)
		}
	}
	return n, nil
}

func firstNonEmpty(a, b json.RawMessage) json.RawMessage {
	if len(a) > 0 {
		return a
	}
	return b
}

// integer64 reads a FHIR integer64, which JSON carries as a string (or,
// from lenient servers, a number); absent is 0. Negative numbers are refused.
func integer64(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
	} else {
		s = string(raw)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer64", secret.Elide(s, 32))
	}
	return v, nil
}

// SplitReference splits "Patient/123" (or an absolute
// ".../Patient/123", or one with "/_history/2") into type and id.
func SplitReference(ref string) (resourceType, id string, ok bool) {
	ref, _, _ = strings.Cut(ref, "/_history/")
	parts := strings.Split(strings.TrimSuffix(ref, "/"), "/")
	if len(parts) < 2 {
		return "", "", false
	}
	resourceType, id = parts[len(parts)-2], parts[len(parts)-1]
	if !validToken(resourceType) || !validToken(id) || resourceType[0] < 'A' || resourceType[0] > 'Z' {
		return "", "", false
	}
	return resourceType, id, true
}

// validToken accepts FHIR ids and resource type names: [A-Za-z0-9.-]{1,64}.
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
