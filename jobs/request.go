package jobs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// TypeVendorRequest is the type name of a vendor request task.
const TypeVendorRequest = "vendor:request"

// RequestMaxRetry is how many times a vendor request is retried after a
// transient failure (5xx, 408, timeout, connection reset) before it fails.
// Waits for the rate budget and 429 pauses are not failures and do not count.
const RequestMaxRetry = 8

// Request is one vendor API call made on behalf of another service: sent
// with the credential's current token through the vendor account's shared
// rate budget, its outcome published as request.completed.<vendor>.<credential>
// or request.failed.<vendor>.<credential> carrying ID. It is also the JSON a
// service submits on NATS (request.submit) or to POST /admin/requests.
type Request struct {
	// ID identifies the request in its outcome event. Default: a new UUID.
	ID string `json:"id"`
	// Vendor is the vendor instance; optional, but when given it must be
	// the credential's.
	Vendor string `json:"vendor,omitempty"`
	// Credential is the id of the credential whose token authorizes the call.
	Credential string `json:"credential"`
	// Method is the HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD).
	Method string `json:"method"`
	// Path is relative to the vendor's base URL ("Patient", "Patient/123").
	Path string `json:"path"`
	// Query is added to the URL. In JSON each value is a string or a list.
	Query Query `json:"query,omitempty"`
	// Headers are sent as given, except Authorization and Host, which are
	// tokenrelay's. The vendor's required headers are added when missing.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is a JSON value sent as is, or a JSON string holding the body in
	// base64 (for bytes that are not JSON). Empty: no body.
	Body json.RawMessage `json:"body,omitempty"`
	// IdempotencyKey, when set, makes any other request with the same key
	// (within the idempotency TTL) a duplicate that is not sent again: its
	// event reports the first one's outcome.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Batch groups requests for progress, cancellation and fairness.
	// Optional; [A-Za-z0-9_-]{1,64}.
	Batch string `json:"batch,omitempty"`
	// Deadline, when set, is when the request stops being worth sending: it
	// then fails with error class "deadline".
	Deadline time.Time `json:"deadline,omitzero"`
	// SubmittedAt is set by tokenrelay when it accepts the request.
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	// Sync is set by tokenrelay on the page requests of a sync (its id):
	// their outcome goes to the sync, not to a request event. A submission
	// that sets it is refused.
	Sync string `json:"sync,omitempty"`
}

// Kind implements Payload.
func (Request) Kind() string { return TypeVendorRequest }

// NewRequest returns a request, with a fresh id, to send method on path
// with credential's token. Set the other fields as needed before submitting.
func NewRequest(credential, method, path string) Request {
	return Request{ID: uuid.NewString(), Credential: credential, Method: method, Path: path}
}

// WithJSONBody returns r with v, marshalled to JSON, as its body.
func (r Request) WithJSONBody(v any) (Request, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return r, fmt.Errorf("jobs: encode body of request %s: %w", r.ID, err)
	}
	r.Body = raw
	return r, nil
}

// WithBytesBody returns r with b as its body (sent as is; carried in base64).
func (r Request) WithBytesBody(b []byte) Request {
	raw, _ := json.Marshal(base64.StdEncoding.EncodeToString(b)) // a string always marshals
	r.Body = raw
	return r
}

// BodyBytes returns the bytes to send: a JSON string body decoded from
// base64, any other JSON value as is, nil when there is no body.
func (r Request) BodyBytes() ([]byte, error) {
	raw := bytes.TrimSpace(r.Body)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] != '"' {
		if !json.Valid(raw) {
			return nil, errors.New("body is not valid JSON")
		}
		return raw, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("body string: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("a string body must be base64 (standard encoding, with padding)")
	}
	return b, nil
}

// Query is a request's query string. In JSON, each value may be a string
// or a list of strings.
type Query url.Values

// UnmarshalJSON accepts {"name": "value"} and {"name": ["v1", "v2"]}.
func (q *Query) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return errors.New("query must be an object of strings or lists of strings")
	}
	out := make(Query, len(m))
	for k, v := range m {
		var one string
		if json.Unmarshal(v, &one) == nil {
			out[k] = []string{one}
			continue
		}
		var many []string
		if err := json.Unmarshal(v, &many); err != nil {
			return fmt.Errorf("query %q must be a string or a list of strings", k)
		}
		out[k] = many
	}
	*q = out
	return nil
}

// NewRequestTask builds the task that sends r, on the default queue, its
// task id derived from r.ID so that enqueueing it twice yields one task
// (the feeder adds the release number: a request handed back for want of
// budget is released again as a new task). A request that has ended is never
// run again, however often its task runs: its state in Redis says so.
// Services submit requests through tokenrelay (NATS request.submit, the
// admin API, or requests.Submitter in Go), which validates them, queues
// them fairly per batch and releases them as this task at the pace of the
// vendor account's budget.
func NewRequestTask(r Request) (*asynq.Task, error) {
	if r.ID == "" {
		return nil, errors.New("jobs: request task needs an id")
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("jobs: encode %s payload: %w", r.Kind(), err)
	}
	return NewRequestTaskPayload(r.ID, raw), nil
}

// NewRequestTaskPayload builds the task of request id with an encoded
// payload as it is: a Request, or a request as package requests queues it
// and the feeder releases it (sealed), with NewRequestTask's options.
func NewRequestTaskPayload(id string, payload []byte) *asynq.Task {
	return asynq.NewTask(TypeVendorRequest, payload,
		asynq.Queue(QueueDefault),
		asynq.TaskID(RequestTaskID(id)),
		asynq.MaxRetry(RequestMaxRetry),
		asynq.Timeout(2*time.Minute),
	)
}

// SealedRequest is the JSON form in which a Request waited in Redis and
// travelled as its task's payload before package requests queued requests
// in a binary form (a third of the size): what the queue's scripts and the
// feeder need in clear (its id, vendor, credential and batch), the whole
// request (path, query, headers, body: patient data) sealed with the
// master key (package seal), bound to those four. Package requests still
// reads it (entries queued before an upgrade) and no longer writes it.
type SealedRequest struct {
	ID         string `json:"id"`
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	Batch      string `json:"batch,omitempty"`
	Sealed     string `json:"sealed"`
	// Trace is the trace context of the request's submission, when tracing
	// is on: each run of its task is a child of that span (never of an
	// earlier run). Ids only; it is not sealed.
	Trace tracing.Carrier `json:"trace,omitzero"`
}

// RequestTaskID is the asynq task id of a request.
func RequestTaskID(id string) string { return "request:" + id }
