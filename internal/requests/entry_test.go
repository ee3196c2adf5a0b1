package requests

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

func testKeyring(t testing.TB) *seal.Keyring {
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	return kr
}

// A queued request opens to exactly the request submitted, whatever it
// holds, with its submission's trace context.
func TestQueuedEntryOpensToTheRequest(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	submitted := time.Date(2026, 12, 7, 14, 0, 0, 123456789, time.UTC)
	full := jobs.Request{ID: "p-1", Vendor: "halaxy-au", Credential: "clinic-1", Method: http.MethodPost, Path: "Patient/1",
		Query:   jobs.Query{"_count": {"10"}, "name": {"a", "b"}, "empty": {}, "blank": {""}},
		Headers: map[string]string{"X-A": "b", "If-Match": `W/"1"`}, Body: json.RawMessage(`{"resourceType":"Patient"}`),
		IdempotencyKey: "k-1", Batch: "nightly", Deadline: time.Date(2099, 1, 1, 10, 0, 0, 0, time.FixedZone("", 10*3600)),
		SubmittedAt: submitted, Sync: "s-1"}
	for name, c := range map[string]struct {
		r  jobs.Request
		tc tracing.Carrier
	}{
		"GET, no batch":       {r: jobs.Request{ID: "a", Vendor: "v", Credential: "c", Method: "GET", Path: "Patient", SubmittedAt: submitted}},
		"every field":         {r: full, tc: tracing.Carrier{TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		"bytes body":          {r: jobs.Request{ID: "b", Vendor: "v", Credential: "c", Method: "PUT", Path: "Binary/1"}.WithBytesBody([]byte{0, 1, 0xff})},
		"deadline UTC":        {r: jobs.Request{ID: "d", Vendor: "v", Credential: "c", Method: "GET", Path: "x", Deadline: submitted.Add(time.Hour)}},
		"deadline local time": {r: jobs.Request{ID: "e", Vendor: "v", Credential: "c", Method: "GET", Path: "x", Deadline: submitted.Local()}},
		"longest id":          {r: jobs.Request{ID: strings.Repeat("i", 128), Vendor: "v", Credential: "c", Method: "GET", Path: "x"}},
	} {
		queued, err := sealRequest(kr, c.r, c.tc)
		require.NoError(t, err, name)
		got, tc, err := openRequest(kr, []byte(queued))
		require.NoError(t, err, name)
		want, _ := json.Marshal(c.r)
		have, _ := json.Marshal(got)
		require.JSONEq(t, string(want), string(have), name)
		require.Equal(t, string(want), string(have), name)
		require.True(t, got.Deadline.Equal(c.r.Deadline), name)
		require.Equal(t, c.tc, tc, name)

		clear, err := readEntry([]byte(queued))
		require.NoError(t, err, name)
		require.Equal(t, entryHead{ID: c.r.ID, Vendor: c.r.Vendor, Credential: c.r.Credential, Batch: c.r.Batch, Trace: c.tc}, clear, name)
	}
}

// Issue 11: a million queued requests in at most 300 MB. The entry of the
// benchmark's request (a UUID id, GET Patient?_count=10) is about a third
// of the JSON form's 484 bytes; the rest of the budget is the request's
// hash (136 bytes in Redis 7).
func TestQueuedEntryIsSmall(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	r := jobs.NewRequest("clinic-1", http.MethodGet, "Patient")
	r.Vendor, r.Batch, r.Query, r.SubmittedAt = "halaxy-bench", "bench", jobs.Query{"_count": {"10"}}, time.Now().UTC()
	queued, err := sealRequest(kr, r, tracing.Carrier{})
	require.NoError(t, err)
	require.LessOrEqual(t, len(queued), 145, "the queued entry grew")
}

// Someone who reads the queue sees the request's id, vendor, credential
// and batch, and nothing of its path, query, headers, body or idempotency
// key, in clear or in base64.
func TestQueuedEntryHoldsNoPatientDataInClear(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	const phi = "Jane-Roe-19620412"
	r := jobs.Request{ID: "p-1", Vendor: "halaxy-au", Credential: "clinic-1", Method: http.MethodPost, Path: "Patient/" + phi,
		Query: jobs.Query{"name": {phi}}, Headers: map[string]string{"X-Patient": phi}, IdempotencyKey: phi,
		Body: json.RawMessage(`{"name":"` + phi + `"}`), Batch: "nightly"}
	queued, err := sealRequest(kr, r, tracing.Carrier{})
	require.NoError(t, err)
	for _, form := range []string{phi, base64.StdEncoding.EncodeToString([]byte(phi))[:20], base64.URLEncoding.EncodeToString([]byte(phi))[:20]} {
		require.NotContains(t, queued, form)
	}
	for _, clear := range []string{r.ID, r.Vendor, r.Credential, r.Batch} {
		require.Contains(t, queued, clear)
	}
}

// Attack: with write access to Redis, move a queued request's sealed part
// under another request's id, or re-point it at another vendor, credential
// or batch (to have it sent with another clinic's token). It does not open.
func TestMovedEntryDoesNotOpen(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	r := jobs.Request{ID: "p-1", Vendor: "halaxy-au", Credential: "clinic-a", Method: http.MethodGet, Path: "Patient/1", Batch: "nightly"}
	queued, err := sealRequest(kr, r, tracing.Carrier{})
	require.NoError(t, err)
	e, sealed, err := decodeEntry([]byte(queued))
	require.NoError(t, err)
	for name, moved := range map[string]entryHead{
		"another id":         {ID: "p-2", Vendor: e.Vendor, Credential: e.Credential, Batch: e.Batch},
		"another vendor":     {ID: e.ID, Vendor: "healthsync", Credential: e.Credential, Batch: e.Batch},
		"another credential": {ID: e.ID, Vendor: e.Vendor, Credential: "clinic-b", Batch: e.Batch},
		"another batch":      {ID: e.ID, Vendor: e.Vendor, Credential: e.Credential, Batch: ""},
	} {
		target := jobs.Request{ID: moved.ID, Vendor: moved.Vendor, Credential: moved.Credential, Batch: moved.Batch}
		other, err := sealRequest(kr, target, tracing.Carrier{})
		require.NoError(t, err)
		_, otherSealed, err := decodeEntry([]byte(other))
		require.NoError(t, err)
		forged := other[:len(other)-len(otherSealed)] + string(sealed)
		_, _, err = openRequest(kr, []byte(forged))
		require.ErrorIs(t, err, seal.ErrAuth, name)
	}
	// Tampering with the sealed part fails too.
	tampered := []byte(queued)
	tampered[len(tampered)-1] ^= 1
	_, _, err = openRequest(kr, tampered)
	require.ErrorIs(t, err, seal.ErrAuth)
}

// Bad payloads are refused with an error that quotes nothing of them.
func TestBadEntryIsRefused(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	queued, err := sealRequest(kr, jobs.Request{ID: "p-1", Vendor: "v", Credential: "c", Method: "GET", Path: "Patient/secret-path"}, tracing.Carrier{})
	require.NoError(t, err)
	for _, bad := range []string{"", "\x01", "\x01\x00", "\x01\x05p-1", queued[:10], queued[:len(queued)-1], "\x02" + queued[1:], "not json"} {
		_, _, err := openRequest(kr, []byte(bad))
		require.Error(t, err, "%q", bad)
		require.NotContains(t, err.Error(), "secret-path")
	}
	_, _, err = openRequest(nil, []byte(queued))
	require.Error(t, err, "a sealed payload opened without a keyring")
	_, err = sealRequest(kr, jobs.Request{ID: strings.Repeat("i", 256)}, tracing.Carrier{})
	require.Error(t, err)
}

// Entries queued before the binary form (JSON: sealed, or plain from before
// requests were sealed) still open, and their id is where release.lua
// finds it.
func TestJSONEntryStillOpens(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	r := jobs.Request{ID: "p-1", Vendor: "halaxy-au", Credential: "clinic-1", Method: http.MethodGet, Path: "Patient",
		Query: jobs.Query{"_count": {"10"}}, Batch: "nightly", SubmittedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	sealedJSON := mustLegacy(t, kr, r)
	plainJSON, err := json.Marshal(r)
	require.NoError(t, err)
	for _, payload := range [][]byte{sealedJSON, plainJSON} {
		got, _, err := openRequest(kr, payload)
		require.NoError(t, err)
		require.Equal(t, r, got)
		clear, err := readEntry(payload)
		require.NoError(t, err)
		require.Equal(t, entryHead{ID: r.ID, Vendor: r.Vendor, Credential: r.Credential, Batch: r.Batch}, clear)
	}
	// A JSON entry's ciphertext re-pointed at another credential does not open.
	var sr jobs.SealedRequest
	require.NoError(t, json.Unmarshal(sealedJSON, &sr))
	sr.Credential = "clinic-2"
	moved, err := json.Marshal(sr)
	require.NoError(t, err)
	_, _, err = openRequest(kr, moved)
	require.True(t, errors.Is(err, seal.ErrAuth), "%v", err)
}

func mustLegacy(t testing.TB, kr *seal.Keyring, r jobs.Request) []byte {
	b, err := LegacyEntry(kr, r)
	require.NoError(t, err)
	return b
}

// FuzzOpenEntry: no payload makes reading or opening a queued request
// panic, and whatever opens is what was sealed.
func FuzzOpenEntry(f *testing.F) {
	kr := testKeyring(f)
	r := jobs.Request{ID: "p-1", Vendor: "halaxy-au", Credential: "clinic-1", Method: http.MethodPost, Path: "Patient",
		Query: jobs.Query{"a": {"b"}}, Headers: map[string]string{"X": "y"}, Body: json.RawMessage(`{}`), Batch: "n",
		Deadline: time.Date(2099, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600)), SubmittedAt: time.Now().UTC()}
	queued, err := sealRequest(kr, r, tracing.Carrier{TraceParent: "00-x"})
	require.NoError(f, err)
	f.Add([]byte(queued))
	f.Add(mustLegacy(f, kr, r))
	f.Add([]byte(`{"id":"p-1","credential":"c","method":"GET","path":"x"}`))
	f.Add([]byte("\x01\x03p-1\x01v\x01c\x00\x00"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, _ = readEntry(payload)
		got, _, err := openRequest(kr, payload)
		if err != nil || len(payload) == 0 || payload[0] == '{' {
			return
		}
		if got.ID != r.ID {
			t.Fatalf("a forged entry opened: %+v", got)
		}
	})
}
