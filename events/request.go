package events

import "time"

// RequestCompleted is the data of a request.completed event: the vendor
// answered a request job (a 2xx or 3xx). Events carry no token; the body is
// the vendor's answer to the submitter's own request.
type RequestCompleted struct {
	// ID is the request's id, as submitted.
	ID         string `json:"id"`
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	Batch      string `json:"batch,omitempty"`
	Status     int    `json:"status"`
	// Headers are the answer's headers that matter to a caller
	// (Content-Type, ETag, Location, Last-Modified, rate-limit headers).
	Headers map[string]string `json:"headers,omitempty"`
	// Body is the answer's body when it fits inline: the JSON itself when
	// it is JSON (BodyEncoding "json"), else base64 (BodyEncoding "base64").
	Body         any    `json:"body,omitempty"`
	BodyEncoding string `json:"body_encoding,omitempty"`
	// BodyRef locates a body too large to carry inline.
	BodyRef  *ObjectRef `json:"body_ref,omitempty"`
	BodySize int        `json:"body_size"`
	// Attempts is how many times the request was sent.
	Attempts int `json:"attempts"`
	// DuplicateOf is set when the request repeated an idempotency key: it
	// was not sent, and this is the outcome of the request it names.
	DuplicateOf string    `json:"duplicate_of,omitempty"`
	CompletedAt time.Time `json:"completed_at"`
}

// ObjectRef names an object in a JetStream object store bucket.
type ObjectRef struct {
	Bucket string `json:"bucket"`
	Name   string `json:"name"`
	Size   int    `json:"size"`
	// Digest is the object's digest as JetStream states it ("SHA-256=…").
	Digest string `json:"digest,omitempty"`
}

// RequestFailed is the data of a request.failed event: the request will
// not be (or was not) answered with success.
type RequestFailed struct {
	ID         string `json:"id"`
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	Batch      string `json:"batch,omitempty"`
	// Class is why: rejected (a 4xx, Message quotes the vendor),
	// unauthorized (401 after a refresh), server_error, timeout, network
	// (retries exhausted), deadline, cancelled, invalid (cannot be sent),
	// credential (no usable token: revoked or unknown).
	Class string `json:"error_class"`
	// Status is the vendor's last status, 0 if none.
	Status      int       `json:"status,omitempty"`
	Message     string    `json:"message"`
	Attempts    int       `json:"attempts"`
	DuplicateOf string    `json:"duplicate_of,omitempty"`
	FailedAt    time.Time `json:"failed_at"`
}
