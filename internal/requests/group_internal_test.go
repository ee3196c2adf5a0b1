package requests

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// jsonGroup is decodeGroup as it was: encoding/json alone.
func jsonGroup(payload []byte) ([]groupEntry, bool) {
	var g groupPayload
	if json.Unmarshal(payload, &g) != nil || len(g.Requests) == 0 {
		return nil, false
	}
	return g.Requests, true
}

// A group's payload as encodeGroup writes it is read without reflection,
// and every other payload (a group written by hand or another encoder, a
// single request's, anything) reads as encoding/json reads it: tasks
// queued before keep running.
func TestDecodeGroupReadsWhatJSONReads(t *testing.T) {
	entries := []groupEntry{{Release: "17", Entry: []byte("\x00\x01binary\xff")}, {Release: "18", Entry: []byte{}},
		{Release: "x y:z", Entry: []byte("e")}}
	enc, err := encodeGroup(entries)
	require.NoError(t, err)
	fast, ok := scanGroup(enc)
	require.True(t, ok, "encodeGroup's payload is read without encoding/json")
	require.Equal(t, entries, fast)
	got, ok := decodeGroup(enc)
	require.True(t, ok)
	require.Equal(t, entries, got)

	indented, err := json.MarshalIndent(groupPayload{Requests: entries}, "", "  ")
	require.NoError(t, err)
	for _, p := range []string{
		string(enc), string(indented),
		`{"requests":[{"entry":"ZQ==","release":"1"}]}`,
		`{"requests":[{"release":"\u0031","entry":"ZQ=="}]}`,
		`{"requests":[{"release":"1","entry":"ZQ\u003d\u003d"}]}`,
		`{"requests":[{"release":"1","entry":"ZQ==","x":1}]}`,
		`{"Requests":[{"Release":"1","Entry":"ZQ=="}]}`,
		`{"requests":[{"release":"1","entry":null}]}`,
		`{"requests":[{"release":"1"}]}`,
		`{"requests":[{"release":"1","entry":"Z\nQ=="}]}`,
		"{\"requests\":[{\"release\":\"1\",\"entry\":\"Z\nQ==\"}]}",
		"{\"requests\":[{\"release\":\"1\",\"entry\":\"Z\rQ==\"}]}",
		`{"requests":[{"release":"1","entry":"ZQ=="}]} `,
		`{"requests":[{"release":"1","entry":"ZQ=="}],"requests":[]}`,
		`{"requests":[{"release":"é","entry":"ZQ=="}]}`,
		"{\"requests\":[{\"release\":\"\xff\",\"entry\":\"ZQ==\"}]}",
		"{\"requests\":[{\"release\":\"a\tb\",\"entry\":\"ZQ==\"}]}",
		`{"requests":[{"release":"1","entry":"not base64!"}]}`,
		`{"requests":[]}`, `{"requests":[`, `{"requests":[{"release":"1","entry":"ZQ=="},]}`,
		`{"id":"r-1","sealed":"v1.x"}`, `null`, ``,
	} {
		want, wantOK := jsonGroup([]byte(p))
		got, ok := decodeGroup([]byte(p))
		require.Equal(t, wantOK, ok, "%q", p)
		require.Equal(t, want, got, "%q", p)
	}
}

// FuzzDecodeGroup: decodeGroup reads any bytes as encoding/json does.
func FuzzDecodeGroup(f *testing.F) {
	f.Add([]byte(`{"requests":[{"release":"1","entry":"ZQ=="},{"release":"2","entry":""}]}`))
	f.Add([]byte(`{"requests":[{"release":"1","entry":"ZQ=="}]}`))
	f.Add([]byte(`{"requests":[]}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		want, wantOK := jsonGroup(p)
		got, ok := decodeGroup(p)
		if ok != wantOK {
			t.Fatalf("%q: ok %v, encoding/json %v", p, ok, wantOK)
		}
		require.Equal(t, want, got, "%q", p)
	})
}
