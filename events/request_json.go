package events

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// A request.completed is written on every request job, its data quoting
// the vendor's whole answer, so New writes it without reflection:
// appendJSON below, byte for byte what json.Marshal writes (the tests hold
// the two side by side), reading the answer once.

// appendJSON appends the JSON of d, as json.Marshal writes it, and reports
// whether it could: false (for json.Marshal to do it) when a string would
// need escaping, the body is neither absent, a plain string nor valid JSON
// appendRawJSON takes (json.Marshal compacts JSON and fails on what is
// not), or a time cannot be written.
func (d RequestCompleted) appendJSON(b []byte) ([]byte, bool) {
	if y := d.CompletedAt.Year(); y < 0 || y > 9999 {
		return nil, false
	}
	for _, s := range [...]string{d.ID, d.Vendor, d.Credential, d.Batch, d.BodyEncoding, d.DuplicateOf} {
		if !plainJSON(s) {
			return nil, false
		}
	}
	b = appendString(append(b, `{"id":`...), d.ID)
	b = appendString(append(b, `,"vendor":`...), d.Vendor)
	b = appendString(append(b, `,"credential":`...), d.Credential)
	if d.Batch != "" {
		b = appendString(append(b, `,"batch":`...), d.Batch)
	}
	b = strconv.AppendInt(append(b, `,"status":`...), int64(d.Status), 10)
	if len(d.Headers) > 0 {
		names := make([]string, 0, len(d.Headers))
		for name, value := range d.Headers {
			if !plainJSON(name) || !plainJSON(value) {
				return nil, false
			}
			names = append(names, name)
		}
		slices.Sort(names) // json.Marshal sorts a map's keys
		b = append(b, `,"headers":{`...)
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(append(appendString(b, name), ':'), d.Headers[name])
		}
		b = append(b, '}')
	}
	switch v := d.Body.(type) {
	case nil:
	case json.RawMessage: // nil or empty is not JSON: json.Marshal writes null or fails
		var ok bool
		if b, ok = appendRawJSON(append(b, `,"body":`...), v); !ok {
			return nil, false
		}
	case string:
		if !plainJSON(v) {
			return nil, false
		}
		b = appendString(append(b, `,"body":`...), v)
	default:
		return nil, false
	}
	if d.BodyEncoding != "" {
		b = appendString(append(b, `,"body_encoding":`...), d.BodyEncoding)
	}
	if r := d.BodyRef; r != nil {
		for _, s := range [...]string{r.Bucket, r.Name, r.Digest} {
			if !plainJSON(s) {
				return nil, false
			}
		}
		b = appendString(append(b, `,"body_ref":{"bucket":`...), r.Bucket)
		b = appendString(append(b, `,"name":`...), r.Name)
		b = strconv.AppendInt(append(b, `,"size":`...), int64(r.Size), 10)
		if r.Digest != "" {
			b = appendString(append(b, `,"digest":`...), r.Digest)
		}
		b = append(b, '}')
	}
	b = strconv.AppendInt(append(b, `,"body_size":`...), int64(d.BodySize), 10)
	b = strconv.AppendInt(append(b, `,"attempts":`...), int64(d.Attempts), 10)
	if d.DuplicateOf != "" {
		b = appendString(append(b, `,"duplicate_of":`...), d.DuplicateOf)
	}
	b = append(b, `,"completed_at":"`...)
	b = d.CompletedAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...), true
}

// marshalData is json.Marshal of an event's data, without reflection for
// a request.completed.
func marshalData(data any) ([]byte, error) {
	if d, ok := data.(RequestCompleted); ok {
		if b, ok := d.appendJSON(make([]byte, 0, d.sizeHint())); ok {
			return b, nil
		}
	}
	return json.Marshal(data)
}

// sizeHint is room enough for the JSON of d, so that appendJSON writes it
// without growing its buffer.
func (d RequestCompleted) sizeHint() int {
	n := 512 + len(d.ID) + len(d.Vendor) + len(d.Credential) + len(d.Batch) + len(d.DuplicateOf)
	for name, value := range d.Headers {
		n += len(name) + len(value) + 6
	}
	if r := d.BodyRef; r != nil {
		n += len(r.Bucket) + len(r.Name) + len(r.Digest)
	}
	switch v := d.Body.(type) {
	case json.RawMessage:
		n += len(v)
	case string:
		n += len(v)
	}
	return n
}

// appendString appends s quoted; s must be plainJSON.
func appendString(b []byte, s string) []byte {
	return append(append(append(b, '"'), s...), '"')
}
