package requests

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// fuzzCredentials knows clinic-1 (active) and gone (revoked).
type fuzzCredentials struct{}

func (fuzzCredentials) CurrentToken(_ context.Context, id string) (store.Credential, error) {
	switch id {
	case "clinic-1":
		return store.Credential{ID: id, Vendor: "halaxy-au", State: store.StateActive}, nil
	case "gone":
		return store.Credential{ID: id, Vendor: "halaxy-au", State: store.StateRevoked}, nil
	}
	return store.Credential{}, store.ErrNotFound
}

// FuzzDecodeRequest feeds the submission parser (what request.submit and
// POST /admin/requests read) and the submitter's validation any bytes: they
// never panic; a decoded request encodes and decodes again to itself; an
// accepted one keeps the rules it was checked against, and its sealed,
// queued form opens to it exactly.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"credential":"clinic-1","method":"GET","path":"Patient","query":{"_count":"10","name":["a","b"]}}`,
		`{"id":"p-1","vendor":"halaxy-au","credential":"clinic-1","method":"post","path":"Patient/1","headers":{"X-A":"b"},"body":{"resourceType":"Patient"},"idempotency_key":"k","batch":"nightly","deadline":"2099-01-01T00:00:00Z"}`,
		`{"credential":"clinic-1","method":"PUT","path":"Binary/1","body":"aGVsbG8="}`,
		`{"credential":"gone","method":"GET","path":"Patient"}`,
		`{"credential":"clinic-1","method":"GET","path":"../admin"}`,
		`{"credential":"clinic-1","method":"GET","path":"Patient","headers":{"Authorization":"Bearer x"}}`,
		`{"credential":"clinic-1","method":"GET","path":"Patient","sealed":"v1.x.y"}`,
		`{"credential":"clinic-1"}{}`,
		`[]`, `null`, `{"query":{"a":1}}`, `{"body":"not base64!"}`,
	} {
		f.Add([]byte(seed))
	}
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	s := &Submitter{o: SubmitterOptions{Redis: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Credentials: fuzzCredentials{},
		Vendors: map[string]config.Vendor{"halaxy-au": {Name: "halaxy-au", Kind: config.KindHalaxy}}, Keyring: kr, MaxBody: 4 << 10,
		Clock: func() time.Time { return now }}}
	if err := s.o.defaults(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeRequest(body)
		if err != nil {
			return
		}
		first, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("a decoded request does not encode: %v", err)
		}
		again, err := DecodeRequest(first)
		if err != nil {
			t.Fatalf("a decoded request, encoded, does not decode: %v\n%s", err, first)
		}
		if second, _ := json.Marshal(again); !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the request:\n%s\n%s", first, second)
		}

		v, _, err := s.validate(context.Background(), r, now)
		if err != nil {
			if _, ok := err.(*SubmitError); !ok {
				t.Fatalf("validation error %T is not a *SubmitError", err)
			}
			return
		}
		body2, berr := v.BodyBytes()
		switch {
		case !requestIDRE.MatchString(v.ID), v.Credential != "clinic-1", v.Vendor != "halaxy-au", !methods[v.Method]:
			t.Fatalf("accepted a request breaking the rules: %+v", v)
		case checkPath(v.Path) != nil, berr != nil, len(body2) > s.o.MaxBody:
			t.Fatalf("accepted a bad path or body: %q %v", v.Path, berr)
		case body2 != nil && (v.Method == http.MethodGet || v.Method == http.MethodHead):
			t.Fatalf("accepted a %s with a body", v.Method)
		}
		for name := range v.Headers {
			if http.CanonicalHeaderKey(name) == "Authorization" || http.CanonicalHeaderKey(name) == "Host" {
				t.Fatalf("accepted header %s", name)
			}
		}
		queued, err := sealRequest(kr, v, tracing.Carrier{})
		if err != nil {
			t.Fatalf("seal: %v", err)
		}
		opened, _, err := openRequest(kr, []byte(queued))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		want, _ := json.Marshal(v)
		if got, _ := json.Marshal(opened); !bytes.Equal(want, got) {
			t.Fatalf("sealed request opens to another:\n%s\n%s", want, got)
		}
		clear, err := readEntry([]byte(queued))
		if err != nil || clear.ID != v.ID || clear.Vendor != v.Vendor || clear.Credential != v.Credential || clear.Batch != v.Batch {
			t.Fatalf("queued form: %+v %v", clear, err)
		}
	})
}
