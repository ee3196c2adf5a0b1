package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"runtime"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/secret"
)

func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// runImport imports o.importN patient-portal credentials through the admin
// API, in requests of o.chunk lines one after the other as the CLI sends
// them, into an empty database, and reports the time and the memory the
// credentials take in Redis.
func runImport(ctx context.Context, o options, db int) error {
	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr, DB: db})
	defer rdb.Close()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return err
	}
	ring, err := seal.NewKeyring([]byte(randomSecret(24)[:32]))
	if err != nil {
		return err
	}
	const prefix = "tokenrelay:"
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: ring})
	if err != nil {
		return err
	}
	cfg := &config.Config{Vendors: map[string]config.Vendor{"patients": {Kind: config.KindFHIRPortal, BaseURL: "https://fhir.portal.example/r4/"}}}
	cfg.SetDefaults()
	token := randomSecret(24)
	srv := httptest.NewServer(admin.Handler(admin.Deps{Config: cfg, Store: st, Token: secret.New(token), Logger: zerolog.Nop()}))
	defer srv.Close()
	client := &adminclient.Client{BaseURL: srv.URL, Token: secret.New(token)}

	// The lines, built before the clock starts: what a file holds.
	chunks := make([][]byte, 0, o.importN/o.chunk+1)
	var buf bytes.Buffer
	for i := range o.importN {
		fmt.Fprintf(&buf, `{"id":"patient-%06d","vendor":"patients","client_id":"pk-%06d-%s","client_secret":"%s"}`+"\n", i, i, randomSecret(6), randomSecret(24))
		if (i+1)%o.chunk == 0 || i == o.importN-1 {
			chunks = append(chunks, slices.Clone(buf.Bytes()))
			buf.Reset()
		}
	}
	runtime.GC()
	memBefore, err := benchdb.UsedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	var created, failed int
	latencies := make([]time.Duration, 0, len(chunks))
	start := time.Now()
	for _, c := range chunks {
		t := time.Now()
		res, err := client.Import(ctx, c)
		if err != nil {
			return err
		}
		latencies = append(latencies, time.Since(t))
		created += res.Created
		failed += len(res.Failed)
	}
	elapsed := time.Since(start)
	memAfter, err := benchdb.UsedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	byFamily, total, err := benchdb.KeyMemory(ctx, rdb, prefix)
	if err != nil {
		return err
	}
	n, err := st.Count(ctx)
	if err != nil {
		return err
	}
	slices.Sort(latencies)
	fmt.Printf("## Import: %d patient-portal credentials through the admin API\n\n", o.importN)
	fmt.Printf("| what | value |\n|---|---|\n")
	fmt.Printf("| requests | %d of %d lines, one after the other (as `tokenrelay credentials import`) |\n", len(chunks), o.chunk)
	fmt.Printf("| created / failed / in the store | %d / %d / %d |\n", created, failed, n)
	fmt.Printf("| wall time | %.1f s |\n", elapsed.Seconds())
	fmt.Printf("| rate | %.0f credentials/s |\n", float64(created)/elapsed.Seconds())
	fmt.Printf("| request latency p50 / p99 / max | %s / %s / %s |\n", pct(latencies, 0.5), pct(latencies, 0.99), latencies[len(latencies)-1].Round(time.Millisecond))
	fmt.Printf("| Redis memory of the keys (MEMORY USAGE, exact) | %.1f MiB, %.0f bytes per credential |\n", mib(total), float64(total)/float64(n))
	for _, f := range sortedKeys(byFamily) {
		fmt.Printf("| &nbsp;&nbsp;%s* | %.1f MiB |\n", f, mib(byFamily[f]))
	}
	fmt.Printf("| used_memory before → after (whole server, shared) | %.1f → %.1f MiB (+%.1f) |\n\n", mib(memBefore), mib(memAfter), mib(memAfter-memBefore))
	return rdb.FlushDB(ctx).Err()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(q*float64(len(sorted))))
	return sorted[i].Round(time.Millisecond)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
