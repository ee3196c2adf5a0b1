package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The outbox entry of an event is what json.Marshal writes, whichever way
// it is encoded.
func TestMarshalEnvelopeIsJSONMarshal(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)
	base, err := New(TypeTokenRenewed, "halaxy-au", "clinic-42", at, TokenRenewed{
		Vendor: "halaxy-au", Credential: "clinic-42", Generation: 7, IssuedAt: at, ExpiresAt: at.Add(time.Hour),
		Fingerprint: "sha256:0123456789ab",
	})
	require.NoError(t, err)
	cases := map[string]func(e *Envelope){
		"plain":             func(*Envelope) {},
		"whole second":      func(e *Envelope) { e.Time = at.Truncate(time.Second) },
		"other zone":        func(e *Envelope) { e.Time = at.In(time.FixedZone("x", 3600+1800)) },
		"spaced data":       func(e *Envelope) { e.Data = json.RawMessage(`{ "a" : [1, 2] }`) },
		"html in data":      func(e *Envelope) { e.Data = json.RawMessage(`{"m":"<b>&</b>"}`) },
		"escapes in data":   func(e *Envelope) { e.Data = json.RawMessage(`{"m":"a\"b\\c\n\u00e9"}`) },
		"unicode in data":   func(e *Envelope) { e.Data = json.RawMessage("{\"m\":\"caf\xc3\xa9 \xe2\x80\xa8\"}") },
		"quote in subject":  func(e *Envelope) { e.Subject = `a"b` },
		"html in source":    func(e *Envelope) { e.Source = "tokenrelay/<x>&" },
		"unicode in source": func(e *Envelope) { e.Source = "tokenrelay/caf\xc3\xa9" },
		"control in id":     func(e *Envelope) { e.ID = "a\x01b" },
		"space in type":     func(e *Envelope) { e.Type = "token renewed" },
		"spaces in strings": func(e *Envelope) { e.Data = json.RawMessage(`{"family":"Smith Jones","given":["Jo Ann"]}`) },
		"space after a string with an escaped quote": func(e *Envelope) {
			e.Data = json.RawMessage(`{"m":"a \" b", "n":"c\\"}`)
		},
		"space after escaped backslash": func(e *Envelope) { e.Data = json.RawMessage(`{"m":"a\\", "n":1}`) },
		"array data":                    func(e *Envelope) { e.Data = json.RawMessage(`[1,"two",null,true]`) },
		"traced":                        func(e *Envelope) { e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
		"trace state": func(e *Envelope) {
			e.TraceParent, e.TraceState = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "congo=t61rcWkgMzE"
		},
		"quote in trace": func(e *Envelope) { e.TraceParent = `0"0` },
	}
	for name, change := range cases {
		ev := base
		change(&ev)
		want, err := json.Marshal(ev)
		require.NoError(t, err, name)
		raw, err := MarshalEnvelope(ev)
		require.NoError(t, err, name)
		require.Equal(t, string(want), string(raw), name)
	}
	_, ok := appendEnvelope(nil, base, false)
	require.True(t, ok, "a usual event is encoded without encoding/json")
	spaced := base
	spaced.Data = json.RawMessage(`{"family":"Smith Jones","text":"a \" b \\"}`)
	_, ok = appendEnvelope(nil, spaced, false)
	require.True(t, ok, "a vendor's compact answer with spaces in its strings is encoded without encoding/json")

	bad := base
	bad.ID = ""
	_, err = MarshalEnvelope(bad)
	require.ErrorContains(t, err, "envelope lacks id")
}
