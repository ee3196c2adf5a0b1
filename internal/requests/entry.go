package requests

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// A queued request is kept by the million (issue 11: a million queued in at
// most 300 MB), so its entry in its batch's queue, which is also its task's
// payload, is bytes rather than JSON:
//
//	0x01 | len(id) (1 byte) | id | vendor | credential | batch | trace | sealed
//
// vendor, credential and batch are strings (uvarint length, bytes), trace is
// the submission's trace context (uvarint count, then name and value
// strings; ids only), and sealed is the rest of the request (method, path,
// query, headers, body, idempotency key, deadline, submission time, sync:
// patient data) in seal's binary form, bound to the id, vendor, credential
// and batch (requestAAD). What is in clear is what the queue's scripts and
// the feeder need without the key: the id at a fixed place (release.lua
// reads it), the rest for cancelling a queued request and tracing its
// release.
//
// Entries queued before this form (JSON: a jobs.SealedRequest, or a plain
// jobs.Request from before requests were sealed) start with '{' and are
// still read, by the scripts as by openRequest, until the last of them has
// run.

// entryBinary is the first byte of a queued request in the binary form.
const entryBinary = 0x01

// sealedFormat is the first byte of the sealed part's plaintext: the
// version of its encoding.
const sealedFormat = 0x01

// entryHead is the clear part of a queued request.
type entryHead struct {
	ID, Vendor, Credential, Batch string
	Trace                         tracing.Carrier
}

// queuedAAD binds a queued request's sealed part to its id, vendor,
// credential and batch. Its domain is not requestAAD's (the JSON form's), so
// a ciphertext of one form never opens as the other.
func queuedAAD(e entryHead) []byte {
	return seal.Bind("request/bin", e.Vendor, e.Credential, e.ID, e.Batch)
}

// sealRequest returns the queued form of r (its entry, which is also its
// task's payload), carrying its submission's trace context tc.
func sealRequest(kr *seal.Keyring, r jobs.Request, tc tracing.Carrier) (string, error) {
	if len(r.ID) == 0 || len(r.ID) > 255 {
		return "", fmt.Errorf("encode request: id of %d bytes (1 to 255)", len(r.ID))
	}
	e := entryHead{ID: r.ID, Vendor: r.Vendor, Credential: r.Credential, Batch: r.Batch, Trace: tc}
	b := make([]byte, 0, 128+len(r.Path)+len(r.Body))
	b = append(b, entryBinary, byte(len(r.ID)))
	b = append(b, r.ID...)
	b = appendString(b, r.Vendor)
	b = appendString(b, r.Credential)
	b = appendString(b, r.Batch)
	b = appendString(b, tc.TraceParent)
	b = appendString(b, tc.TraceState)
	b, err := kr.AppendSeal(b, appendSealedPart(nil, r), queuedAAD(e))
	if err != nil {
		return "", fmt.Errorf("seal request %s: %w", r.ID, err)
	}
	return string(b), nil
}

// openRequest reads a queued request or task payload in any form (binary,
// or JSON: jobs.SealedRequest, or a plain jobs.Request queued before
// requests were sealed), opening what is sealed with kr; it returns the
// request and its submission's trace context. Errors never quote the
// payload.
func openRequest(kr *seal.Keyring, payload []byte) (jobs.Request, tracing.Carrier, error) {
	if len(payload) > 0 && payload[0] == '{' {
		return openJSON(kr, payload)
	}
	e, sealed, err := decodeEntry(payload)
	if err != nil {
		return jobs.Request{}, tracing.Carrier{}, err
	}
	if kr == nil {
		return jobs.Request{}, tracing.Carrier{}, errors.New("requests: request payload is sealed and no keyring is configured")
	}
	plain, err := kr.OpenBinary(sealed, queuedAAD(e))
	if err != nil {
		return jobs.Request{}, tracing.Carrier{}, fmt.Errorf("requests: open request %s: %w", e.ID, err)
	}
	r := jobs.Request{ID: e.ID, Vendor: e.Vendor, Credential: e.Credential, Batch: e.Batch}
	if err := decodeSealedPart(plain, &r); err != nil {
		return jobs.Request{}, tracing.Carrier{}, fmt.Errorf("requests: sealed request %s: %w", e.ID, err)
	}
	return r, e.Trace, nil
}

// readEntry returns the clear part of a queued request in any form, without
// opening it.
func readEntry(payload []byte) (entryHead, error) {
	if len(payload) > 0 && payload[0] == '{' {
		var sr jobs.SealedRequest // a plain jobs.Request has the same names
		if err := json.Unmarshal(payload, &sr); err != nil {
			return entryHead{}, fmt.Errorf("requests: request payload is not JSON: %w", err)
		}
		if sr.ID == "" {
			return entryHead{}, errors.New("requests: request payload has no id")
		}
		return entryHead{ID: sr.ID, Vendor: sr.Vendor, Credential: sr.Credential, Batch: sr.Batch, Trace: sr.Trace}, nil
	}
	e, _, err := decodeEntry(payload)
	return e, err
}

// openJSON reads a payload queued before the binary form.
func openJSON(kr *seal.Keyring, payload []byte) (jobs.Request, tracing.Carrier, error) {
	var sr jobs.SealedRequest
	if err := json.Unmarshal(payload, &sr); err != nil {
		return jobs.Request{}, tracing.Carrier{}, fmt.Errorf("requests: request payload is not JSON: %w", err)
	}
	var r jobs.Request
	if sr.Sealed == "" {
		if err := json.Unmarshal(payload, &r); err != nil {
			return r, tracing.Carrier{}, fmt.Errorf("requests: request payload: %w", err)
		}
		return r, sr.Trace, nil
	}
	if kr == nil {
		return r, tracing.Carrier{}, errors.New("requests: request payload is sealed and no keyring is configured")
	}
	raw, err := kr.Open(sr.Sealed, requestAAD(sr.ID, sr.Vendor, sr.Credential, sr.Batch))
	if err != nil {
		return r, tracing.Carrier{}, fmt.Errorf("requests: open request %s: %w", sr.ID, err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, tracing.Carrier{}, fmt.Errorf("requests: sealed request %s: %w", sr.ID, err)
	}
	if r.ID != sr.ID || r.Vendor != sr.Vendor || r.Credential != sr.Credential || r.Batch != sr.Batch {
		return r, tracing.Carrier{}, fmt.Errorf("requests: sealed request %s does not match its payload", sr.ID)
	}
	return r, sr.Trace, nil
}

// errEntry is a queued request's entry that is not in the binary form or
// is cut short.
var errEntry = errors.New("requests: malformed request payload")

// decodeEntry splits a binary entry into its clear part and its sealed
// part.
func decodeEntry(b []byte) (entryHead, []byte, error) {
	if len(b) < 2 || b[0] != entryBinary || int(b[1]) > len(b)-2 || b[1] == 0 {
		return entryHead{}, nil, errEntry
	}
	e := entryHead{ID: string(b[2 : 2+b[1]])}
	d := decoder{b: b[2+b[1]:]}
	e.Vendor = d.string()
	e.Credential = d.string()
	e.Batch = d.string()
	e.Trace.TraceParent = d.string()
	e.Trace.TraceState = d.string()
	if d.err != nil {
		return entryHead{}, nil, fmt.Errorf("%w (request %s)", errEntry, e.ID)
	}
	return e, d.b, nil
}

// appendSealedPart encodes what of r is sealed: every field but the id,
// vendor, credential and batch, which are in clear beside it (and bound to
// it).
func appendSealedPart(b []byte, r jobs.Request) []byte {
	b = append(b, sealedFormat)
	b = appendString(b, r.Method)
	b = appendString(b, r.Path)
	b = binary.AppendUvarint(b, uint64(len(r.Query)))
	for _, k := range sortedKeys(r.Query) {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(r.Query[k])))
		for _, v := range r.Query[k] {
			b = appendString(b, v)
		}
	}
	b = appendPairs(b, r.Headers)
	b = appendString(b, string(r.Body))
	b = appendString(b, r.IdempotencyKey)
	b = appendTime(b, r.Deadline)
	b = appendTime(b, r.SubmittedAt)
	return appendString(b, r.Sync)
}

// decodeSealedPart decodes appendSealedPart's bytes into r.
func decodeSealedPart(b []byte, r *jobs.Request) error {
	if len(b) == 0 || b[0] != sealedFormat {
		return errors.New("unknown encoding")
	}
	d := decoder{b: b[1:]}
	r.Method = d.string()
	r.Path = d.string()
	if n := d.count(); n > 0 {
		r.Query = make(jobs.Query, n)
		for range n {
			k := d.string()
			vals := make([]string, d.count())
			for i := range vals {
				vals[i] = d.string()
			}
			r.Query[k] = vals
		}
	}
	if h := d.pairs(); len(h) > 0 {
		r.Headers = h
	}
	if body := d.string(); body != "" {
		r.Body = json.RawMessage(body)
	}
	r.IdempotencyKey = d.string()
	r.Deadline = d.time()
	r.SubmittedAt = d.time()
	r.Sync = d.string()
	if d.err == nil && len(d.b) > 0 {
		d.err = errors.New("trailing bytes")
	}
	return d.err
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendPairs encodes a map of strings, in the order of its keys.
func appendPairs(b []byte, m map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for _, k := range sortedKeys(m) {
		b = appendString(appendString(b, k), m[k])
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Times: 0 for the zero time; 1, seconds (zigzag varint) and nanoseconds
// (uvarint) for a UTC time (the submission time always is); 2 and
// time.MarshalBinary's bytes for any other (a deadline given with an
// offset keeps it).
const (
	timeZero = iota
	timeUTC
	timeZoned
)

func appendTime(b []byte, t time.Time) []byte {
	switch {
	case t.IsZero():
		return append(b, timeZero)
	case t.Location() == time.UTC:
		b = binary.AppendVarint(append(b, timeUTC), t.Unix())
		return binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	raw, err := t.MarshalBinary()
	if err != nil { // an offset that is not whole minutes: keep the instant
		return appendTime(b, t.UTC())
	}
	return appendString(append(b, timeZoned), string(raw))
}

// decoder reads what the append functions wrote; its first error sticks
// and every later read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("cut short or malformed")
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items to come, each at least a byte long.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) pairs() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *decoder) time() time.Time {
	if len(d.b) == 0 {
		d.fail()
		return time.Time{}
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case timeZero:
		return time.Time{}
	case timeUTC:
		sec, n := binary.Varint(d.b)
		if n <= 0 {
			d.fail()
			return time.Time{}
		}
		d.b = d.b[n:]
		nsec := d.uvarint()
		if nsec >= uint64(time.Second) {
			d.fail()
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	case timeZoned:
		var t time.Time
		if err := t.UnmarshalBinary([]byte(d.string())); err != nil {
			d.fail()
		}
		return t
	}
	d.fail()
	return time.Time{}
}
