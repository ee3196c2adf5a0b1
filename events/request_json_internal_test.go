package events

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// A request.completed's data is what json.Marshal writes, whichever way it
// is encoded, and a usual one (a vendor's compact JSON answer) is written
// without encoding/json.
func TestRequestCompletedDataIsJSONMarshal(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 15, 0, 0, 123456789, time.UTC)
	base := RequestCompleted{ID: "req-1", Vendor: "halaxy-au", Credential: "clinic-1", Batch: "b1", Status: 200,
		Headers: map[string]string{"Content-Type": "application/fhir+json", "ETag": `W/1`, "Last-Modified": "Mon, 07 Dec 2026 15:00:00 GMT"},
		Body:    json.RawMessage(`{"resourceType":"Bundle","entry":[{"name":"Jo Ann"}]}`), BodyEncoding: "json",
		BodySize: 52, Attempts: 2, CompletedAt: at}
	cases := map[string]struct {
		change func(d *RequestCompleted)
		fast   bool // written without encoding/json
	}{
		"usual":         {func(*RequestCompleted) {}, true},
		"no batch":      {func(d *RequestCompleted) { d.Batch = "" }, true},
		"no headers":    {func(d *RequestCompleted) { d.Headers = nil }, true},
		"empty headers": {func(d *RequestCompleted) { d.Headers = map[string]string{} }, true},
		"no body":       {func(d *RequestCompleted) { d.Body, d.BodyEncoding, d.BodySize = nil, "", 0 }, true},
		"base64 body":   {func(d *RequestCompleted) { d.Body, d.BodyEncoding = "cGxhaW4gdGV4dA==", "base64" }, true},
		"body in the store": {func(d *RequestCompleted) {
			d.Body, d.BodyEncoding, d.BodyRef = nil, "", &ObjectRef{Bucket: "b", Name: "n/1", Size: 9, Digest: "SHA-256=x"}
		}, true},
		"ref without digest": {func(d *RequestCompleted) { d.Body, d.BodyRef = nil, &ObjectRef{Bucket: "b", Name: "n", Size: 1} }, true},
		"duplicate":          {func(d *RequestCompleted) { d.DuplicateOf = "req-0" }, true},
		"other zone":         {func(d *RequestCompleted) { d.CompletedAt = at.In(time.FixedZone("x", 3600)) }, true},
		"whole second":       {func(d *RequestCompleted) { d.CompletedAt = at.Truncate(time.Second) }, true},
		"zero time":          {func(d *RequestCompleted) { d.CompletedAt = time.Time{} }, true},
		"spaces in strings":  {func(d *RequestCompleted) { d.Body = json.RawMessage(`{"family":"Smith Jones","t":"a \" b \\"}`) }, true},
		"spaced body":        {func(d *RequestCompleted) { d.Body = json.RawMessage("{ \"a\" : [1, 2] }\n") }, true},
		"html in body":       {func(d *RequestCompleted) { d.Body = json.RawMessage(`{"m":"<b>&</b>"}`) }, false},
		"unicode in body":    {func(d *RequestCompleted) { d.Body = json.RawMessage("{\"m\":\"caf\xc3\xa9 \xe2\x80\xa8\"}") }, false},
		"escapes in body":    {func(d *RequestCompleted) { d.Body = json.RawMessage(`{"m":"a\"b\\c\n\u00e9"}`) }, true},
		"quote in header":    {func(d *RequestCompleted) { d.Headers["ETag"] = `"abc"` }, false},
		"html in header":     {func(d *RequestCompleted) { d.Headers["Link"] = `<https://x/>; rel="next"` }, false},
		"html in id":         {func(d *RequestCompleted) { d.ID = "a<b" }, false},
		"string body quote":  {func(d *RequestCompleted) { d.Body, d.BodyEncoding = `a"b`, "base64" }, false},
		"nil raw body":       {func(d *RequestCompleted) { d.Body = json.RawMessage(nil) }, false},
		"other body":         {func(d *RequestCompleted) { d.Body = map[string]int{"a": 1} }, false},
		"negative status":    {func(d *RequestCompleted) { d.Status, d.Attempts = -1, -2 }, true},
	}
	for name, c := range cases {
		d := base
		d.Headers = map[string]string{}
		for k, v := range base.Headers {
			d.Headers[k] = v
		}
		c.change(&d)
		want, err := json.Marshal(d)
		require.NoError(t, err, name)
		got, err := marshalData(d)
		require.NoError(t, err, name)
		require.Equal(t, string(want), string(got), name)
		_, fast := d.appendJSON(nil)
		require.Equal(t, c.fast, fast, name)
	}
	for name, body := range map[string]string{"not JSON": `{"resourceType":`, "empty": ``, "text": `plain`} {
		d := base
		d.Body = json.RawMessage(body)
		_, err := marshalData(d)
		require.Error(t, err, "%s: json.Marshal's error, for the caller to send it as base64", name)
	}
}

// SealNew's entry is the event New builds, traced and sealed, byte for byte
// what SealOutboxEntry seals, though its data is not checked again.
func TestSealNewIsSealOutboxEntry(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring([]byte(strings.Repeat("k", seal.KeySize)))
	require.NoError(t, err)
	at := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	for _, body := range []string{`{"resourceType":"Bundle","total":1}`, `{ "spaced" : true }`, `{"m":"<b>"}`} {
		data := RequestCompleted{ID: "req-1", Vendor: "halaxy-au", Credential: "clinic-1", Status: 200,
			Body: json.RawMessage(body), BodyEncoding: "json", CompletedAt: at}
		env, entry, err := SealNew(context.Background(), kr, TypeRequestCompleted, "halaxy-au", "clinic-1", at, data)
		require.NoError(t, err, body)
		require.Equal(t, []any{OutboxFieldID, env.ID, OutboxFieldSubject, env.Subject}, entry[:4])
		opened, err := OpenOutboxEvent(kr, env.ID, env.Subject, string(entry[5].([]byte)))
		require.NoError(t, err, body)
		want, err := json.Marshal(env)
		require.NoError(t, err)
		require.Equal(t, string(want), string(opened), body)
	}
	_, _, err = SealNew(context.Background(), kr, TypeRequestCompleted, "halaxy-au", "clinic 1", at, RequestCompleted{})
	require.Error(t, err, "the subject is checked as SealOutboxEntry checks it")
}
