package syncs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// The sync's own work per page, apart from the request job that fetched it
// (BENCHMARKS.md, "Issue 11: sync performance"): go test -run '^$' -bench
// PageDone ./internal/syncs. Each part on the machine's real Redis, a page
// of 100 Patients as the sandbox serves them.
func BenchmarkPageDone(b *testing.B) {
	ctx := context.Background()
	_, rdb := testenv.RedisDB(b)
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(b, err)
	st, err := store.New(rdb, store.Options{Prefix: "b:", Keyring: kr})
	require.NoError(b, err)
	_, err = st.Upsert(ctx, store.NewCredential{ID: "c", Vendor: "v", ClientID: "id", Keys: store.Keys{ClientSecret: secret.New("s")}})
	require.NoError(b, err)
	base := "http://vendor.example/main/"
	vs := map[string]config.Vendor{"v": {Name: "v", Kind: config.KindHalaxy, BaseURL: base}}
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: rdb, Prefix: "b:", Credentials: st, Vendors: vs, Keyring: kr})
	require.NoError(b, err)
	r, err := New(Deps{Redis: rdb, Prefix: "b:", Submitter: sub, Credentials: st, Vendors: vs, Keyring: kr, MaxPages: 1 << 30})
	require.NoError(b, err)
	body := benchPage(base)
	ans := vendors.Answer{Status: 200, Header: http.Header{"Content-Type": {"application/fhir+json"}}, Body: body}
	b.Logf("a page of 100 Patients: %d bytes", len(body))

	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := parsePage(ans); err != nil {
				b.Fatal(err)
			}
		}
	})
	// event: the sync.page event of the page's resources, built and
	// sealed for the outbox (commit.lua's largest argument).
	b.Run("event", func(b *testing.B) {
		p, err := parsePage(ans)
		require.NoError(b, err)
		rec := record{id: "e", vendor: "v", credential: "c"}
		for b.Loop() {
			if _, err := r.event(ctx, events.TypeSyncPage, rec, "page-1", time.Now(), events.SyncPage{SyncID: "e", Page: 1, Resources: p.resources}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		s, err := r.Start(ctx, jobs.Sync{Credential: "c", Resource: "Patient", ID: "load"})
		require.NoError(b, err)
		for b.Loop() {
			if _, err := r.load(ctx, s.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("submit", func(b *testing.B) {
		n := 0
		for b.Loop() {
			n++
			_, err := sub.Submit(ctx, jobs.Request{ID: "sync.x." + strconv.Itoa(n), Vendor: "v", Credential: "c",
				Method: "GET", Path: "Patient", Query: jobs.Query{"_count": {"100"}, "_after": {strconv.Itoa(n)}}, Batch: "sync-x", Sync: "x"})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	// whole: PageDone of page n with a next link: load, open, parse,
	// seal and commit.lua, the cancel read, the next page's submit.
	b.Run("whole", func(b *testing.B) {
		s, err := r.Start(ctx, jobs.Sync{Credential: "c", Resource: "Patient", ID: "whole"})
		require.NoError(b, err)
		n := 0
		for b.Loop() {
			n++
			req := jobs.Request{ID: pageRequestID(s.ID, n), Vendor: "v", Credential: "c", Sync: s.ID}
			if err := r.PageDone(ctx, req, ans); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchPage is a searchset Bundle of 100 Patients with a next link.
func benchPage(base string) []byte {
	entries := make([]map[string]any, 100)
	for i := range entries {
		id := strconv.Itoa(1001 + i)
		entries[i] = map[string]any{"fullUrl": base + "Patient/" + id, "search": map[string]string{"mode": "match"},
			"resource": map[string]any{"resourceType": "Patient", "id": id, "active": true,
				"meta": map[string]string{"versionId": "1", "lastUpdated": "2026-12-07T04:00:00.000Z"},
				"name": []map[string]any{{"use": "official", "family": "Test" + id, "given": []string{"Pat"}}}}}
	}
	raw, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "searchset", "total": 100000,
		"meta":  map[string]string{"lastUpdated": time.Now().UTC().Format(time.RFC3339Nano)},
		"link":  []map[string]string{{"relation": "next", "url": fmt.Sprintf("%sPatient?_count=100&_after=%d", base, 1100)}},
		"entry": entries})
	return raw
}
