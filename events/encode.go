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
	if b, ok := appendEnvelope(make([]byte, 0, 200+len(env.Data)), env); ok {
		return b, nil
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("events: encode event %s: %w", env.ID, err)
	}
	return b, nil
}

// appendEnvelope appends the JSON of a valid envelope, byte for byte what
// json.Marshal writes, without reflection: an event is encoded on every
// renewal. It reports false, for json.Marshal to do it, when a value would
// need escaping or compacting (json.Marshal escapes quotes, backslashes,
// control characters and <, > and &, also within data, and compacts data),
// or the time cannot be written.
func appendEnvelope(b []byte, ev Envelope) ([]byte, bool) {
	if y := ev.Time.Year(); y < 0 || y > 9999 || !plainJSON(ev.Data, true) {
		return nil, false
	}
	for _, f := range [...]struct{ name, value string }{
		{`{"specversion":"`, ev.SpecVersion}, {`","id":"`, ev.ID}, {`","source":"`, ev.Source},
		{`","type":"`, ev.Type}, {`","subject":"`, ev.Subject},
	} {
		if !plainJSON(f.value, false) {
			return nil, false
		}
		b = append(append(b, f.name...), f.value...)
	}
	b = append(b, `","time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	if !plainJSON(ev.DataContentType, false) {
		return nil, false
	}
	b = append(append(b, `","datacontenttype":"`...), ev.DataContentType...)
	b = append(append(b, `","data":`...), ev.Data...)
	for _, f := range [...]struct{ name, value string }{
		{`,"traceparent":"`, ev.TraceParent}, {`,"tracestate":"`, ev.TraceState},
	} {
		if f.value == "" { // omitempty
			continue
		}
		if !plainJSON(f.value, false) {
			return nil, false
		}
		b = append(append(append(b, f.name...), f.value...), '"')
	}
	return append(b, '}'), true
}

// plainJSON reports whether json.Marshal writes s as it is: printable
// ASCII without <, > or &; in a string value (isJSON false), without quote
// or backslash; in JSON text (isJSON true), without space, which
// compacting could take out.
func plainJSON[T ~string | ~[]byte](s T, isJSON bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return false
		}
		if isJSON && c == ' ' || !isJSON && (c == '"' || c == '\\') {
			return false
		}
	}
	return true
}
