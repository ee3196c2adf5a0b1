package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestImportedPortalKeysDeletedByPatientsAreRevokedOnce imports 5,000
// patient-portal credentials through the admin API while the pipeline runs;
// 50 patients then delete their keys. Exactly those 50 get key.revoked,
// once each, and are never called again; the others go on renewing.
func TestImportedPortalKeysDeletedByPatientsAreRevokedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run of 5,000 credentials")
	}
	t.Parallel()
	const (
		total    = 5000
		deleted  = 50
		lifetime = 20 * time.Second
	)
	p := newPipeline(t, 0, lifetime, "")
	p.cfg.Vendors["patients"] = config.Vendor{Kind: config.KindFHIRPortal, BaseURL: p.sbURL + sandbox.FHIRPortalPath,
		MaxTokenLifetime: config.Duration(lifetime), RefreshAt: 2.0 / 3.0, RefreshJitter: 0.1}
	p.cfg.HTTP.AdminToken = secret.New("admin-token-0123456789abcdefghijklmnopq-" + p.cfg.NATS.Stream)
	sched := p.scheduler()
	workers := []*role{p.worker(), p.worker()}
	admin := &adminclient.Client{BaseURL: "http://" + workers[0].addr, Token: p.cfg.HTTP.AdminToken}

	var lines bytes.Buffer
	for i := range total {
		id := fmt.Sprintf("patient-%04d", i)
		key, sec := "key-"+id, fmt.Sprintf("secret-%04d-%s", i, p.cfg.NATS.Stream)
		p.sandbox.AddClient(key, sec)
		line, err := json.Marshal(map[string]string{"id": id, "vendor": "patients", "client_id": key, "client_secret": sec})
		require.NoError(t, err)
		lines.Write(append(line, '\n'))
		if (i+1)%1000 == 0 {
			res, err := admin.Import(context.Background(), lines.Bytes())
			require.NoError(t, err)
			require.Equal(t, 1000, res.Created, "failed lines: %v", res.Failed)
			lines.Reset()
		}
	}
	waitAll := func(gen int64, skip map[string]bool, within time.Duration) {
		t.Helper()
		require.Eventually(t, func() bool {
			n := 0
			for id, s := range p.summaries() {
				if !skip[id] && s.Generation >= gen {
					n++
				}
			}
			return n == total-len(skip)
		}, within, 200*time.Millisecond)
	}
	waitAll(1, nil, 2*time.Minute)

	gone := map[string]bool{}
	for i := range deleted {
		id := fmt.Sprintf("patient-%04d", i*97)
		gone[id] = true
		p.sandbox.DeleteClient("key-" + id)
	}
	require.Eventually(t, func() bool {
		n := 0
		for id, s := range p.summaries() {
			if gone[id] && s.State == store.StateRevoked {
				n++
			}
		}
		return n == deleted
	}, 2*time.Minute, 200*time.Millisecond, "every deleted key should be revoked at its next refresh")
	calls := map[string]int{}
	for id := range gone {
		calls[id] = p.sandbox.TokenCalls("key-" + id)
	}
	before := p.summaries()
	require.Eventually(t, func() bool {
		for id, s := range p.summaries() {
			if !gone[id] && s.Generation <= before[id].Generation {
				return false
			}
		}
		return true
	}, 2*time.Minute, 200*time.Millisecond, "the others renew once more")
	for id := range gone {
		require.Equal(t, calls[id], p.sandbox.TokenCalls("key-"+id), "%s was called after it was revoked", id)
	}

	for _, w := range workers {
		w.stop(t)
	}
	p.waitOutboxEmpty()
	sched.stop(t)
	revoked := map[string]int{}
	for _, e := range p.readStream(p.inspect.JS) {
		switch e.Env.Type {
		case events.TypeKeyRevoked:
			var d events.KeyRevoked
			require.NoError(t, json.Unmarshal(e.Env.Data, &d))
			require.Equal(t, events.ReasonRevokedByVendor, d.Reason)
			revoked[d.Credential]++
		case events.TypeTokenRefreshFailed:
			t.Errorf("no transient failure expected: %s", e.Raw)
		}
	}
	require.Len(t, revoked, deleted)
	for id, n := range revoked {
		require.True(t, gone[id], "%s was revoked but its key was not deleted", id)
		require.Equal(t, 1, n, "%s revoked %d times", id, n)
	}
}
