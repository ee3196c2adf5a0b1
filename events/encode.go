package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// MarshalEnvelope validates an envelope and returns its JSON, byte for byte
// what json.Marshal writes: the form every outbox entry and every published
// event carries. The usual event is written without reflection (one is
// encoded on every renewal).
func MarshalEnvelope(env Envelope) ([]byte, error) {
	if err := env.Validate(); err != nil {
		return nil, err
	}
	return marshalValid(env)
}

// marshalValid is MarshalEnvelope of an envelope its caller has validated:
// each check of the data is a pass over the vendor's whole answer.
func marshalValid(env Envelope) ([]byte, error) {
	return appendValid(make([]byte, 0, envelopeOverhead+len(env.Data)), env, false)
}

// appendValid appends the JSON of an envelope its caller has validated to
// b, as marshalValid writes it; dataEncoded as for appendEnvelope.
func appendValid(b []byte, env Envelope, dataEncoded bool) ([]byte, error) {
	if out, ok := appendEnvelope(b, env, dataEncoded); ok {
		return out, nil
	}
	j, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("events: encode event %s: %w", env.ID, err)
	}
	return append(b, j...), nil
}

// envelopeOverhead is room enough for an envelope's JSON around its data:
// its attributes and a traceparent.
const envelopeOverhead = 400

// appendEnvelope appends the JSON of a valid envelope, byte for byte what
// json.Marshal writes, without reflection: an event is encoded on every
// renewal. It reports false, for json.Marshal to do it, when a value would
// need escaping (json.Marshal escapes quotes, backslashes, control
// characters and <, > and &, also within data) or the time cannot be
// written; the data is compacted as json.Marshal compacts it
// (appendRawJSON). dataEncoded says ev.Data is as json.Marshal writes it
// (New's), so it is written without a look.
func appendEnvelope(b []byte, ev Envelope, dataEncoded bool) ([]byte, bool) {
	if y := ev.Time.Year(); y < 0 || y > 9999 {
		return nil, false
	}
	for _, f := range [...]struct{ name, value string }{
		{`{"specversion":"`, ev.SpecVersion}, {`","id":"`, ev.ID}, {`","source":"`, ev.Source},
		{`","type":"`, ev.Type}, {`","subject":"`, ev.Subject},
	} {
		if !plainJSON(f.value) {
			return nil, false
		}
		b = append(append(b, f.name...), f.value...)
	}
	b = append(b, `","time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	if !plainJSON(ev.DataContentType) {
		return nil, false
	}
	b = append(append(b, `","datacontenttype":"`...), ev.DataContentType...)
	b = append(b, `","data":`...)
	if dataEncoded {
		b = append(b, ev.Data...)
	} else {
		var ok bool
		if b, ok = appendRawJSON(b, ev.Data); !ok {
			return nil, false
		}
	}
	for _, f := range [...]struct{ name, value string }{
		{`,"traceparent":"`, ev.TraceParent}, {`,"tracestate":"`, ev.TraceState},
	} {
		if f.value == "" { // omitempty
			continue
		}
		if !plainJSON(f.value) {
			return nil, false
		}
		b = append(append(append(b, f.name...), f.value...), '"')
	}
	return append(b, '}'), true
}

// plainJSON reports whether json.Marshal writes the string value s as it
// is: printable ASCII without <, > or &, quote or backslash.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '<' || c == '>' || c == '&' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
