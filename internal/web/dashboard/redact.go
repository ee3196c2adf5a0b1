package dashboard

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// Payload rendering. The queue dashboard shows a task's payload by an
// allow-list: for each task type tokenrelay enqueues, the fields known to
// hold nothing secret (ids, numbers, times), each rendered by its kind;
// every other field, of any task, shows its name and not its value, and a
// payload of an unknown type or not JSON shows only its size. A field
// added to a payload later is so hidden until it is listed here.
const (
	redacted = "«redacted»"
	// maxShown caps a value shown (a header's, a path).
	maxShown = 200
)

// fieldKind says how an allowed field's value is shown.
type fieldKind int

const (
	kindID           fieldKind = iota // an id: shown if it looks like one
	kindNumber                        // a JSON number
	kindTime                          // an RFC 3339 time
	kindMethod                        // an HTTP method
	kindPath                          // a vendor API path: resource names, ids masked
	kindQuery                         // a query: names, values redacted
	kindHeaders                       // headers: names, values of safeHeaders only
	kindBody                          // a body: its size
	kindSet                           // shown only as set or not
	kindRefreshItems                  // a list of token:refresh payloads
)

// taskFields lists, per task type, the payload fields shown and how.
var taskFields = map[string]map[string]fieldKind{
	jobs.TypeTokenRefresh:      {"credential": kindID, "generation": kindNumber},
	jobs.TypeTokenRefreshBatch: {"items": kindRefreshItems},
	jobs.TypeKeyRotate:         {"credential": kindID},
	jobs.TypeVendorRequest: {"id": kindID, "vendor": kindID, "credential": kindID, "method": kindMethod,
		"path": kindPath, "query": kindQuery, "headers": kindHeaders, "body": kindBody,
		"idempotency_key": kindSet, "batch": kindID, "deadline": kindTime, "submitted_at": kindTime},
	webhooks.TypePoll: {"vendor": kindID, "resource": kindID, "slot": kindNumber},
}

// safeHeaders are the request headers whose values are shown (lowercase):
// content negotiation and caching, never credentials or cookies.
var safeHeaders = map[string]bool{"accept": true, "accept-language": true, "accept-encoding": true,
	"content-type": true, "content-language": true, "prefer": true, "cache-control": true,
	"if-match": true, "if-none-match": true, "if-modified-since": true, "x-request-id": true}

var (
	shownID      = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	shownMethod  = regexp.MustCompile(`^[A-Z]{1,10}$`)
	shownSegment = regexp.MustCompile(`^\$?[A-Za-z_-]{1,64}$`)
)

// RedactPayload renders a task payload (or result) for asynqmon as
// indented JSON of the fields taskFields allows for its type.
func RedactPayload(taskType string, payload []byte) string {
	fields, known := taskFields[taskType]
	if !known {
		return fmt.Sprintf("«%d bytes of a %q task: not shown»", len(payload), taskType)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return fmt.Sprintf("«%d bytes, not a JSON object: not shown»", len(payload))
	}
	out, err := json.MarshalIndent(shownFields(m, fields), "", "  ")
	if err != nil {
		return fmt.Sprintf("«%d bytes: not shown»", len(payload))
	}
	return string(out)
}

// shownFields renders the allowed fields of m, and the others' names.
func shownFields(m map[string]json.RawMessage, fields map[string]fieldKind) map[string]any {
	out := make(map[string]any, len(m))
	for k, raw := range m {
		kind, ok := fields[k]
		if !ok {
			out[k] = redacted
			continue
		}
		out[k] = shownValue(kind, raw)
	}
	return out
}

// shownValue renders one allowed field by its kind; a value not of its
// kind is not shown.
func shownValue(kind fieldKind, raw json.RawMessage) any {
	var str string
	isString := json.Unmarshal(raw, &str) == nil
	switch kind {
	case kindID:
		if isString && shownID.MatchString(str) {
			return str
		}
	case kindMethod:
		if isString && shownMethod.MatchString(str) {
			return str
		}
	case kindTime:
		if _, err := time.Parse(time.RFC3339Nano, str); isString && err == nil {
			return str
		}
	case kindNumber:
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n
		}
	case kindPath:
		if isString {
			return shownPath(str)
		}
	case kindQuery:
		var q map[string]json.RawMessage
		if json.Unmarshal(raw, &q) == nil {
			out := make(map[string]string, len(q))
			for k := range q {
				out[k] = redacted
			}
			return out
		}
	case kindHeaders:
		var h map[string]string
		if json.Unmarshal(raw, &h) == nil {
			out := make(map[string]string, len(h))
			for k, v := range h {
				out[k] = redacted
				if safeHeaders[strings.ToLower(k)] && len(v) <= maxShown && !strings.ContainsAny(v, "\r\n") {
					out[k] = v
				}
			}
			return out
		}
	case kindBody:
		if string(raw) == "null" {
			return nil
		}
		return fmt.Sprintf("«%d bytes: not shown»", len(raw))
	case kindSet:
		return "«set»"
	case kindRefreshItems:
		var items []map[string]json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			out := make([]map[string]any, len(items))
			for i, it := range items {
				out[i] = shownFields(it, taskFields[jobs.TypeTokenRefresh])
			}
			return out
		}
	}
	return redacted
}

// shownPath shows the resource names of a vendor API path and masks the
// other segments (ids of patients and records, anything else): e.g.
// "Patient/«id»/$everything".
func shownPath(p string) string {
	if len(p) > maxShown {
		return redacted
	}
	path, _, _ := strings.Cut(p, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s != "" && !shownSegment.MatchString(s) {
			segs[i] = "«id»"
		}
	}
	return strings.Join(segs, "/")
}
