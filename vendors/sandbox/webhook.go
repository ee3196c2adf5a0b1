package sandbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Webhook signing schemes the sender speaks, as the vendors do.
const (
	// SchemeStandardWebhooks signs with webhook-id, webhook-timestamp and
	// webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>",
	// one signature per secret (several during a rotation).
	SchemeStandardWebhooks = "standard-webhooks"
	// SchemeToken sends a static token in a header: Halaxy's
	// authentication header, Redox's verification-token.
	SchemeToken = "token"
	// SchemeNone sends nothing to prove where the delivery comes from.
	SchemeNone = "none"
)

// StandardWebhooksSchedule is the retry schedule of the Standard Webhooks
// specification: the first attempt, then after 5 s, 5 min, 30 min, 2 h,
// 5 h, 10 h and 10 h.
var StandardWebhooksSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// ErrSenderStopped: the sender was stopped (Stop) and sends nothing.
var ErrSenderStopped = errors.New("sandbox: webhook sender stopped")

// WebhookSenderOptions configure a WebhookSender.
type WebhookSenderOptions struct {
	// URL is the receiver, e.g. http://worker/webhooks/healthsync. Required.
	URL string
	// Scheme is how deliveries are signed: SchemeStandardWebhooks,
	// SchemeToken or SchemeNone. Required.
	Scheme string
	// Secrets sign deliveries: standard-webhooks "whsec_<base64>" (each
	// signs; give two during a rotation); token: the first is the token.
	Secrets []string
	// Header carries the token (SchemeToken). Default "Authorization".
	Header string
	// Schedule is the delay before each attempt. Default
	// StandardWebhooksSchedule.
	Schedule []time.Duration
	// Compress divides every delay of Schedule, so that hours take
	// milliseconds in a test. Default 1 (real time).
	Compress float64
	// Clock stamps webhook-timestamp. Default time.Now.
	Clock func() time.Time
	// HTTPClient sends. Default a client with a 10 s timeout.
	HTTPClient *http.Client
}

// WebhookSender sends webhooks the way a vendor does: genuine ones with
// retries on anything but 2xx, and, on request, forged, stale, replayed,
// oversized and malformed ones. Its methods are safe for concurrent use.
type WebhookSender struct {
	o    WebhookSenderOptions
	keys [][]byte

	mu       sync.Mutex
	stopped  bool
	attempts int
	last     map[string]sentRequest
}

// sentRequest is an attempt as it went out, for a replay.
type sentRequest struct {
	header http.Header
	body   []byte
}

// NewWebhookSender makes a sender.
func NewWebhookSender(o WebhookSenderOptions) (*WebhookSender, error) {
	if o.URL == "" {
		return nil, errors.New("sandbox: webhook sender needs a URL")
	}
	if len(o.Schedule) == 0 {
		o.Schedule = StandardWebhooksSchedule
	}
	if o.Compress <= 0 {
		o.Compress = 1
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if o.Header == "" {
		o.Header = "Authorization"
	}
	s := &WebhookSender{o: o, last: map[string]sentRequest{}}
	switch o.Scheme {
	case SchemeStandardWebhooks:
		for _, sec := range o.Secrets {
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sec, "whsec_"))
			if err != nil {
				return nil, errors.New(`sandbox: a standard-webhooks secret is not "whsec_<base64>"`)
			}
			s.keys = append(s.keys, key)
		}
		if len(s.keys) == 0 {
			return nil, errors.New("sandbox: standard-webhooks needs a secret")
		}
	case SchemeToken:
		if len(o.Secrets) == 0 || o.Secrets[0] == "" {
			return nil, errors.New("sandbox: token scheme needs a token")
		}
	case SchemeNone:
	default:
		return nil, fmt.Errorf("sandbox: unknown webhook scheme %q", o.Scheme)
	}
	return s, nil
}

// Delivery is one webhook: its id (webhook-id; a new one when empty) and
// JSON body.
type Delivery struct {
	ID   string
	Body []byte
}

// Attempt is one try of a delivery.
type Attempt struct {
	// Status is the receiver's answer, 0 when the request failed.
	Status int
	Err    error
}

// SendResult is how a delivery went.
type SendResult struct {
	ID       string
	Attempts []Attempt
	// Delivered: an attempt got 2xx.
	Delivered bool
}

// Send delivers d, retrying on anything but 2xx after each delay of the
// schedule (compressed), until delivered, the schedule ends or ctx ends.
// Each attempt is signed afresh (a new webhook-timestamp), as senders do.
func (s *WebhookSender) Send(ctx context.Context, d Delivery) (SendResult, error) {
	if d.ID == "" {
		d.ID = NewWebhookID()
	}
	res := SendResult{ID: d.ID}
	for _, delay := range s.o.Schedule {
		if delay > 0 {
			t := time.NewTimer(time.Duration(float64(delay) / s.o.Compress))
			select {
			case <-ctx.Done():
				t.Stop()
				return res, ctx.Err()
			case <-t.C:
			}
		}
		if s.Stopped() {
			return res, ErrSenderStopped
		}
		status, err := s.post(ctx, s.sign(d.ID, s.o.Clock(), d.Body, false), d.Body)
		res.Attempts = append(res.Attempts, Attempt{Status: status, Err: err})
		if status >= 200 && status < 300 {
			res.Delivered = true
			return res, nil
		}
	}
	return res, nil
}

// Tamper is a way of sending a delivery that a receiver must refuse (or,
// for TamperReplay, recognise).
type Tamper int

const (
	// TamperForged signs with a key that is not the shared secret (token
	// scheme: a wrong token).
	TamperForged Tamper = iota + 1
	// TamperUnsigned leaves the signature (or token) out.
	TamperUnsigned
	// TamperStale signs with a timestamp 10 minutes old.
	TamperStale
	// TamperFuture signs with a timestamp 10 minutes ahead.
	TamperFuture
	// TamperReplay resends the last attempt of the delivery byte for byte
	// (headers and body), as an attacker who captured it would.
	TamperReplay
	// TamperOversized pads the body with spaces past 2 MiB, genuinely signed.
	TamperOversized
	// TamperMalformed sends a body that is not JSON, genuinely signed.
	TamperMalformed
)

// SendTampered sends d once, tampered with, without retries, and returns
// the receiver's status.
func (s *WebhookSender) SendTampered(ctx context.Context, d Delivery, how Tamper) (int, error) {
	if d.ID == "" {
		d.ID = NewWebhookID()
	}
	now := s.o.Clock()
	body := d.Body
	var h http.Header
	switch how {
	case TamperForged:
		h = s.sign(d.ID, now, body, true)
	case TamperUnsigned:
		h = http.Header{}
	case TamperStale:
		h = s.sign(d.ID, now.Add(-10*time.Minute), body, false)
	case TamperFuture:
		h = s.sign(d.ID, now.Add(10*time.Minute), body, false)
	case TamperReplay:
		s.mu.Lock()
		last, ok := s.last[d.ID]
		s.mu.Unlock()
		if !ok {
			return 0, fmt.Errorf("sandbox: delivery %s was never sent", d.ID)
		}
		h, body = last.header, last.body
	case TamperOversized:
		body = append(append([]byte{}, body...), bytes.Repeat([]byte{' '}, 2<<20)...)
		h = s.sign(d.ID, now, body, false)
	case TamperMalformed:
		body = []byte(`{"truncated":`)
		h = s.sign(d.ID, now, body, false)
	default:
		return 0, fmt.Errorf("sandbox: unknown tamper %d", how)
	}
	return s.post(ctx, h, body)
}

// Stop makes the sender send nothing more (Send returns ErrSenderStopped),
// as a vendor whose webhooks went quiet; Resume undoes it.
func (s *WebhookSender) Stop() { s.setStopped(true) }

// Resume lets a stopped sender send again.
func (s *WebhookSender) Resume() { s.setStopped(false) }

func (s *WebhookSender) setStopped(v bool) {
	s.mu.Lock()
	s.stopped = v
	s.mu.Unlock()
}

// Stopped says whether the sender is stopped.
func (s *WebhookSender) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// AttemptCount is how many requests the sender made.
func (s *WebhookSender) AttemptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// sign makes the headers of one attempt; forged signs with a wrong key.
func (s *WebhookSender) sign(id string, at time.Time, body []byte, forged bool) http.Header {
	h := http.Header{}
	switch s.o.Scheme {
	case SchemeStandardWebhooks:
		ts := strconv.FormatInt(at.Unix(), 10)
		keys := s.keys
		if forged {
			keys = [][]byte{[]byte("not-the-shared-secret")}
		}
		sigs := make([]string, 0, len(keys))
		for _, key := range keys {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(id + "." + ts + "."))
			m.Write(body)
			sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
		}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", strings.Join(sigs, " "))
	case SchemeToken:
		tok := s.o.Secrets[0]
		if forged {
			tok = "forged-" + tok
		}
		h.Set(s.o.Header, tok)
	}
	return h
}

func (s *WebhookSender) post(ctx context.Context, h http.Header, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("sandbox: webhook request: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tokenrelay-sandbox-webhooks")
	s.mu.Lock()
	s.attempts++
	if id := h.Get("webhook-id"); id != "" {
		s.last[id] = sentRequest{header: h.Clone(), body: body}
	}
	s.mu.Unlock()
	resp, err := s.o.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("sandbox: send webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// VerifyEndpoint performs Redox's endpoint verification against the
// receiver: a POST body {"verification-token","challenge"} (or, with get,
// the same as GET query parameters), and reports whether the answer
// carries the challenge.
func (s *WebhookSender) VerifyEndpoint(ctx context.Context, get bool) (bool, error) {
	if s.o.Scheme != SchemeToken {
		return false, errors.New("sandbox: endpoint verification needs the token scheme")
	}
	challenge := NewWebhookID()
	var req *http.Request
	var err error
	if get {
		q := url.Values{"challenge": {challenge}, "verification-token": {s.o.Secrets[0]}}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, s.o.URL+"?"+q.Encode(), nil)
	} else {
		body, _ := json.Marshal(map[string]string{"verification-token": s.o.Secrets[0], "challenge": challenge})
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(body))
		if req != nil {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if err != nil {
		return false, fmt.Errorf("sandbox: verification request: %w", err)
	}
	req.Header.Set("application-name", "RedoxEngine")
	resp, err := s.o.HTTPClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("sandbox: verification: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(challenge)), nil
}

// NewWebhookID makes a random delivery id ("msg_…").
func NewWebhookID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "msg_" + hex.EncodeToString(b[:])
}
