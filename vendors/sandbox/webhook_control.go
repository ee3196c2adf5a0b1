package sandbox

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The webhook sender's control endpoints, for processes that drive the
// sandbox over HTTP (the Go API is WebhookSender and FHIRSubscription):
//
//	POST /_sandbox/webhooks/send     {"url","scheme","secrets":[...],"header","compress",
//	                                  "id","body":<JSON>,"tamper":"forged"|"unsigned"|"stale"|"future"|
//	                                  "replay"|"oversized"|"malformed",
//	                                  "fhir":{"subscription","kind":"handshake"|"heartbeat"|"notify",
//	                                          "focus":[...],"full_resource","skip"}}
//	                                 → {"id","delivered","attempts":[status,...]}
//	POST /_sandbox/webhooks/stop     every sender stops sending (the vendor went quiet)  204
//	POST /_sandbox/webhooks/resume   they send again                                     204
//
// A genuine delivery is retried on the Standard Webhooks schedule divided
// by compress (default 1000: hours take seconds) and the answer comes when
// it is delivered or the schedule ends; a tampered one is sent once.
func (s *Sandbox) webhookControlRoutes(mux *http.ServeMux) {
	c := &webhookControl{senders: map[string]*WebhookSender{}, subs: map[string]*FHIRSubscription{}, clock: s.clock}
	mux.HandleFunc("POST "+ControlPath+"webhooks/send", c.send)
	mux.HandleFunc("POST "+ControlPath+"webhooks/stop", func(w http.ResponseWriter, _ *http.Request) {
		c.setStopped(true)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+ControlPath+"webhooks/resume", func(w http.ResponseWriter, _ *http.Request) {
		c.setStopped(false)
		w.WriteHeader(http.StatusNoContent)
	})
}

type webhookControl struct {
	clock   func() time.Time
	mu      sync.Mutex
	stopped bool
	senders map[string]*WebhookSender
	subs    map[string]*FHIRSubscription
}

var tampers = map[string]Tamper{
	"forged": TamperForged, "unsigned": TamperUnsigned, "stale": TamperStale, "future": TamperFuture,
	"replay": TamperReplay, "oversized": TamperOversized, "malformed": TamperMalformed,
}

type webhookSendJSON struct {
	URL      string          `json:"url"`
	Scheme   string          `json:"scheme"`
	Secrets  []string        `json:"secrets"`
	Header   string          `json:"header"`
	Compress float64         `json:"compress"`
	ID       string          `json:"id"`
	Body     json.RawMessage `json:"body"`
	Tamper   string          `json:"tamper"`
	FHIR     *struct {
		Subscription string   `json:"subscription"`
		Kind         string   `json:"kind"`
		Focus        []string `json:"focus"`
		FullResource bool     `json:"full_resource"`
		Skip         int      `json:"skip"`
	} `json:"fhir"`
}

func (c *webhookControl) setStopped(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = v
	for _, s := range c.senders {
		s.setStopped(v)
	}
}

// sender returns the sender of a target, made once so that a replay finds
// what it sent.
func (c *webhookControl) sender(in webhookSendJSON) (*WebhookSender, error) {
	if in.Compress <= 0 {
		in.Compress = 1000
	}
	key := strings.Join(append([]string{in.URL, in.Scheme, in.Header}, in.Secrets...), "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.senders[key]; ok {
		return s, nil
	}
	s, err := NewWebhookSender(WebhookSenderOptions{URL: in.URL, Scheme: in.Scheme, Secrets: in.Secrets,
		Header: in.Header, Compress: in.Compress, Clock: c.clock})
	if err != nil {
		return nil, err
	}
	s.setStopped(c.stopped)
	c.senders[key] = s
	return s, nil
}

func (c *webhookControl) subscription(id string) *FHIRSubscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	sub, ok := c.subs[id]
	if !ok {
		sub = NewFHIRSubscription(id, "", c.clock)
		c.subs[id] = sub
	}
	return sub
}

func (c *webhookControl) send(w http.ResponseWriter, r *http.Request) {
	var in webhookSendJSON
	if !decode(w, r, &in) {
		return
	}
	s, err := c.sender(in)
	if err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	body := []byte(in.Body)
	if f := in.FHIR; f != nil {
		sub := c.subscription(f.Subscription)
		sub.Skip(f.Skip)
		switch f.Kind {
		case "handshake":
			body = sub.Handshake()
		case "heartbeat":
			body = sub.Heartbeat()
		case "notify":
			body = sub.Notify(f.FullResource, f.Focus...)
		default:
			controlError(w, http.StatusBadRequest, `fhir.kind must be handshake, heartbeat or notify`)
			return
		}
	}
	if len(body) == 0 {
		controlError(w, http.StatusBadRequest, "body (JSON) or fhir is required")
		return
	}
	d := Delivery{ID: in.ID, Body: body}
	if in.Tamper != "" {
		how, ok := tampers[in.Tamper]
		if !ok {
			controlError(w, http.StatusBadRequest, "unknown tamper "+in.Tamper)
			return
		}
		status, err := s.SendTampered(r.Context(), d, how)
		if err != nil {
			controlError(w, http.StatusBadGateway, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, "application/json", map[string]any{"id": in.ID, "delivered": status/100 == 2, "attempts": []int{status}})
		return
	}
	res, err := s.Send(r.Context(), d)
	if err != nil && res.ID == "" {
		controlError(w, http.StatusBadGateway, err.Error())
		return
	}
	statuses := make([]int, len(res.Attempts))
	for i, a := range res.Attempts {
		statuses[i] = a.Status
	}
	out := map[string]any{"id": res.ID, "delivered": res.Delivered, "attempts": statuses}
	if err != nil {
		out["error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, "application/json", out)
}
