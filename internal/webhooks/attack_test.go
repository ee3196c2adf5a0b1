package webhooks_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/internal/webhooks/verify"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// The attacks of issue 10, point 4: a captured genuine delivery replayed
// into new events, and forged or replayed notifications spending a
// vendor's budget.

// bodySigned are the headers of a body signed by the signed-body vendor
// (HMAC-SHA256 of the body alone).
func bodySigned(body []byte) http.Header {
	m := hmac.New(sha256.New, []byte(bodyKey))
	m.Write(body)
	return http.Header{"X-Signature": {"sha256=" + hex.EncodeToString(m.Sum(nil))}}
}

// with is h with one more header.
func with(h http.Header, name, value string) http.Header {
	out := h.Clone()
	out.Set(name, value)
	return out
}

// postTo posts to another receiver's server and returns the status and
// the answer's headers. It is safe in a goroutine of the test.
func (r *rig) postTo(base, vendor string, h http.Header, body []byte) (int, http.Header, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/webhooks/"+vendor, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// TestAttackReplayWithAnotherUnsignedIDIsPublishedOnce: a captured genuine
// delivery of a scheme that signs the body only (or nothing but a static
// token) is replayed with a webhook-id header of the attacker's choosing.
// That header is not covered by any signature: the delivery is still
// recognised by its body, acknowledged, and neither published nor fetched
// again.
func TestAttackReplayWithAnotherUnsignedIDIsPublishedOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	plain := []byte(`{"type":"patient.updated","data":{"id":"p-1"}}`)
	sub := sandbox.NewFHIRSubscription("sub-replay", "", r.clock.Now)
	idOnly := sub.Notify(false, "Patient/p-2")
	halaxy := http.Header{"Authorization": {halaxyAuth}}
	halaxyBody := []byte(`{"resourceType":"Patient","id":"p-3"}`)

	cases := []struct {
		vendor string
		h      http.Header
		body   []byte
	}{
		{"signed-body", bodySigned(plain), plain},
		{"signed-body", bodySigned(idOnly), idOnly},
		{"halaxy-au", halaxy, halaxyBody},
	}
	for _, c := range cases {
		status, answer := r.post(c.vendor, with(c.h, verify.HeaderID, "msg_genuine"), c.body)
		require.Equal(t, 200, status, answer)
		for i, id := range []string{"msg_replay_1", "msg_replay_2", ""} {
			r.clock.Advance(time.Hour)
			h := c.h
			if id != "" {
				h = with(h, verify.HeaderID, id)
			}
			status, answer := r.post(c.vendor, h, c.body)
			require.Equal(t, 200, status, "%s replay %d: %s", c.vendor, i, answer)
			require.Contains(t, answer, "already received", "%s replay %d", c.vendor, i)
		}
	}
	require.Len(t, r.stored(), 3, "each genuine delivery published once")
	require.Equal(t, 1, len(r.fetches.all()), "the id-only notification fetched once")
	require.Equal(t, 6, r.count("signed-body", webhooks.OutcomeDuplicate))
	require.Equal(t, 3, r.count("halaxy-au", webhooks.OutcomeDuplicate))
	for _, s := range r.stored() {
		require.NotContains(t, s.data.DeliveryID, "msg_", "an unsigned header never names a delivery")
	}
}

// TestAttackStandardWebhooksNewIDOldSignature: Standard Webhooks signs the
// webhook-id with the body and timestamp. A captured delivery replayed
// with a new webhook-id and its old signature is refused; replayed as it
// was, it is a duplicate; replayed once its timestamp is out of the
// tolerance (after the dedup window, say), it is refused as stale.
func TestAttackStandardWebhooksNewIDOldSignature(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	body := []byte(`{"type":"patient.updated","data":{"id":"p-4"}}`)
	genuine := signed(t, "msg_1", r.clock.Now(), body, hsSecret)
	status, answer := r.post("healthsync", genuine, body)
	require.Equal(t, 200, status, answer)

	status, answer = r.post("healthsync", with(genuine, verify.HeaderID, "msg_2"), body)
	require.Equal(t, http.StatusUnauthorized, status, answer)
	require.Equal(t, 1, r.count("healthsync", webhooks.OutcomeBadSignature))

	status, answer = r.post("healthsync", genuine, body)
	require.Equal(t, 200, status, answer)
	require.Contains(t, answer, "already received")

	// Replayed as it was once the dedup window is over: its timestamp is
	// out of the tolerance, and that alone refuses it.
	r.clock.Advance(time.Duration(config.DefaultWebhookDedupWindow) + time.Hour)
	status, answer = r.post("healthsync", genuine, body)
	require.Equal(t, http.StatusUnauthorized, status, answer)
	require.Equal(t, 1, r.count("healthsync", webhooks.OutcomeStale))

	require.Len(t, r.stored(), 1)
}

// manyFocus is an id-only notification (event number since) naming n
// resources "Patient/<i>", or n times the same one, in as few bytes as a
// FHIR server could send it.
func manyFocus(subscription string, since int64, n int, same bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"resourceType":"Bundle","type":"history","entry":[{"resource":{"resourceType":"SubscriptionStatus",`+
		`"type":"event-notification","eventsSinceSubscriptionStart":"%d","subscription":{"reference":"Subscription/%s"},"notificationEvent":[`,
		since, subscription)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := strconv.Itoa(i)
		if same {
			id = "same"
		}
		b.WriteString(`{"focus":{"reference":"Patient/` + id + `"}}`)
	}
	b.WriteString(`]}}]}`)
	return b.Bytes()
}

// TestAttackNotificationNaming10000Resources: one genuine (or forged)
// notification naming 10,000 resources has at most
// max_fetches_per_delivery of them fetched, and each resource once.
func TestAttackNotificationNaming10000Resources(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{tune: func(vs map[string]config.Vendor) {
		v := vs["halaxy-au"]
		v.Webhooks.MaxBody = 16 << 20
		// A rate that does not get in the way: this is the per-delivery bound.
		v.Webhooks.FetchRate = config.FetchRate{Limit: 1_000_000, Per: config.Duration(time.Minute)}
		vs["halaxy-au"] = v
	}})
	h := http.Header{"Authorization": {halaxyAuth}}

	status, answer := r.post("halaxy-au", h, manyFocus("sub-many", 10_000, 10_000, false))
	require.Equal(t, 200, status, answer)
	n := config.DefaultWebhookMaxFetchesPerDelivery
	require.Equal(t, n, len(r.fetches.all()))
	require.Positive(t, testutil.ToFloat64(r.metrics.FetchesLimited.WithLabelValues("halaxy-au", webhooks.LimitPerDelivery)))
	require.Contains(t, r.logs.String(), "max_fetches_per_delivery")

	status, answer = r.post("halaxy-au", h, manyFocus("sub-many-2", 10_000, 10_000, true))
	require.Equal(t, 200, status, answer)
	require.Equal(t, n+1, len(r.fetches.all()), "a resource named 10,000 times is fetched once")
	require.Len(t, r.stored(), 2)
}

// TestAttackFloodCappedAtFetchRate: a flood of valid, distinct id-only
// notifications, spread over two workers, gets no more fetches than the
// vendor's fetch_rate: the others are answered 503 with Retry-After,
// unrelayed, and pass once the window has moved.
func TestAttackFloodCappedAtFetchRate(t *testing.T) {
	t.Parallel()
	const limit, flood = 10, 30
	r := newRig(t, rigOptions{tune: halaxyFetchRate(limit)})
	_, other := r.receiver()
	h := http.Header{"Authorization": {halaxyAuth}}

	bodies := make([][]byte, flood)
	for i := range bodies {
		bodies[i] = sandbox.NewFHIRSubscription(fmt.Sprintf("flood-%d", i), "", r.clock.Now).Notify(false, fmt.Sprintf("Patient/f-%d", i))
	}
	statuses := make([]int, flood)
	var wg sync.WaitGroup
	for i := range bodies {
		base := r.srv.URL
		if i%2 == 1 {
			base = other.URL
		}
		wg.Go(func() {
			status, ah, err := r.postTo(base, "halaxy-au", h, bodies[i])
			assert.NoError(t, err)
			statuses[i] = status
			if status == http.StatusServiceUnavailable {
				sec, err := strconv.Atoi(ah.Get("Retry-After"))
				assert.NoError(t, err)
				assert.Positive(t, sec)
				assert.LessOrEqual(t, sec, 60)
			}
		})
	}
	wg.Wait()
	accepted, throttled := 0, -1
	for i, s := range statuses {
		switch s {
		case 200:
			accepted++
		case http.StatusServiceUnavailable:
			throttled = i
		default:
			t.Fatalf("notification %d: status %d", i, s)
		}
	}
	require.Equal(t, limit, accepted)
	require.Equal(t, limit, len(r.fetches.all()))
	require.Len(t, r.stored(), limit, "a throttled notification is not relayed")
	require.Equal(t, flood-limit, r.count("halaxy-au", webhooks.OutcomeThrottled))

	// The vendor retries a minute later: relayed and fetched.
	r.clock.Advance(time.Minute)
	status, _, err := r.postTo(other.URL, "halaxy-au", h, bodies[throttled])
	require.NoError(t, err)
	require.Equal(t, 200, status)
	require.Equal(t, limit+1, len(r.fetches.all()))
}

// halaxyFetchRate sets halaxy-au's fetch_rate to limit per minute.
func halaxyFetchRate(limit int) func(vs map[string]config.Vendor) {
	return func(vs map[string]config.Vendor) {
		v := vs["halaxy-au"]
		v.Webhooks.FetchRate = config.FetchRate{Limit: limit, Per: config.Duration(time.Minute)}
		vs["halaxy-au"] = v
	}
}

// catchUps are the catch-up fetches made so far, as (since, until).
func catchUps(t *testing.T, r *rig) [][2]int64 {
	t.Helper()
	var out [][2]int64
	for _, f := range r.fetches.all() {
		if !strings.HasSuffix(f.Path, "/$events") {
			continue
		}
		since, err := strconv.ParseInt(f.Query.Get("eventsSinceNumber"), 10, 64)
		require.NoError(t, err)
		until, err := strconv.ParseInt(f.Query.Get("eventsUntilNumber"), 10, 64)
		require.NoError(t, err)
		out = append(out, [2]int64{since, until})
	}
	return out
}

// TestAttackHugeEventNumberGap: a notification, or a heartbeat, claiming
// a billion missed events makes one catch-up of max_catch_up events, not a
// billion fetches nor one asking for a billion events.
func TestAttackHugeEventNumberGap(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	h := http.Header{"Authorization": {halaxyAuth}}
	sub := sandbox.NewFHIRSubscription("sub-gap", "", r.clock.Now)
	for _, body := range [][]byte{sub.Handshake(), sub.Notify(true, "Patient/g-1")} {
		status, answer := r.post("halaxy-au", h, body)
		require.Equal(t, 200, status, answer)
	}
	sub.Skip(1_000_000_000)
	status, answer := r.post("halaxy-au", h, sub.Notify(true, "Patient/g-2"))
	require.Equal(t, 200, status, answer)
	sub.Skip(1_000_000_000)
	status, answer = r.post("halaxy-au", h, sub.Heartbeat())
	require.Equal(t, 200, status, answer)

	max := int64(config.DefaultWebhookMaxCatchUp)
	require.Equal(t, [][2]int64{{2, 1 + max}, {1_000_000_003, 1_000_000_002 + max}}, catchUps(t, r))
	require.Equal(t, 2, len(r.fetches.all()))
	require.Equal(t, 2.0, testutil.ToFloat64(r.metrics.FetchesLimited.WithLabelValues("halaxy-au", webhooks.LimitCatchUp)))
}

// TestCatchUpWaitsForTheFetchRate: a catch-up the fetch rate does not
// allow now is not lost: the gap is not recorded as caught up, and the
// next heartbeat asks for all of it.
func TestCatchUpWaitsForTheFetchRate(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{tune: halaxyFetchRate(1)})
	h := http.Header{"Authorization": {halaxyAuth}}
	sub := sandbox.NewFHIRSubscription("sub-wait", "", r.clock.Now)
	post := func(body []byte) {
		t.Helper()
		status, answer := r.post("halaxy-au", h, body)
		require.Equal(t, 200, status, answer)
	}
	post(sub.Handshake())
	post(sub.Notify(true, "Patient/w-1"))
	sub.Skip(5)
	post(sub.Notify(true, "Patient/w-7")) // catch-up 2..6: the minute's one fetch
	sub.Skip(3)
	post(sub.Notify(true, "Patient/w-11")) // gap 8..10: relayed, catch-up waits
	require.Equal(t, [][2]int64{{2, 6}}, catchUps(t, r))
	require.Len(t, r.stored(), 3)

	r.clock.Advance(time.Minute)
	post(sub.Heartbeat())
	require.Equal(t, [][2]int64{{2, 6}, {8, 11}}, catchUps(t, r))
}

// TestNoWebhookBodyInRedis: whatever arrives, and however it ends
// (relayed, duplicate, throttled, refused), no part of a webhook body
// (nor a delivery id, nor a header) is kept in Redis, in clear or encoded:
// bodies live only in the JetStream stream. Every key the receiver writes
// is one of state.go's documented keys.
func TestNoWebhookBodyInRedis(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{tune: halaxyFetchRate(2)})
	const marker = "PHIMARKER7d1c"
	halaxy := http.Header{"Authorization": {halaxyAuth}}
	plain := []byte(`{"type":"patient.updated","data":{"name":"` + marker + `-plain"}}`)
	sub := sandbox.NewFHIRSubscription(marker+"-sub", "", r.clock.Now)
	posts := []struct {
		vendor string
		h      http.Header
		body   []byte
	}{
		{"healthsync", signed(t, marker+"-msg", r.clock.Now(), plain, hsSecret), plain},
		{"healthsync", signed(t, marker+"-msg", r.clock.Now(), plain, hsSecret), plain},
		{"healthsync", with(signed(t, marker+"-msg", r.clock.Now(), plain, hsSecret), verify.HeaderID, marker+"-forged"), plain},
		{"signed-body", bodySigned(plain), plain},
		{"signed-body", with(bodySigned(plain), verify.HeaderID, marker+"-unsigned"), plain},
		{"redox-prod", http.Header{"Verification-Token": {redoxToken}}, []byte(`{"Meta":{"DataModel":"` + marker + `"}}`)},
		{"open", nil, []byte(`{"event":"` + marker + `"}`)},
		{"halaxy-au", halaxy, sub.Handshake()},
		{"halaxy-au", halaxy, sub.Notify(false, "Patient/"+marker+"-1", "Patient/"+marker+"-2")},
		{"halaxy-au", halaxy, sub.Notify(false, "Patient/"+marker+"-3")}, // throttled
		{"halaxy-au", halaxy, sub.Heartbeat()},
	}
	for _, p := range posts {
		r.post(p.vendor, p.h, p.body)
	}
	require.Equal(t, 1, r.count("halaxy-au", webhooks.OutcomeThrottled))
	require.NotEmpty(t, r.stored())

	forms := []string{marker, strings.ToLower(marker), hex.EncodeToString([]byte(marker)),
		base64.StdEncoding.EncodeToString([]byte(marker))[:12], base64.RawURLEncoding.EncodeToString([]byte(marker))[:12]}
	known := regexp.MustCompile(`^webhooks:(seen:[a-z-]+:[0-9a-f]{32}|live:[a-z-]+|events:[a-z-]+:[0-9a-f]{32}|fetches:[a-z-]+)$`)
	ctx := context.Background()
	iter := r.rdb.Scan(ctx, 0, r.prefix+"*", 500).Iterator()
	keys := 0
	for iter.Next(ctx) {
		key := iter.Val()
		keys++
		require.Regexp(t, known, strings.TrimPrefix(key, r.prefix))
		dump := key + "\n" + redisValue(t, r, key)
		for _, f := range forms {
			require.NotContains(t, dump, f, "key %s", key)
		}
	}
	require.NoError(t, iter.Err())
	require.Positive(t, keys)
}

// redisValue is everything a key holds, as text.
func redisValue(t *testing.T, r *rig, key string) string {
	t.Helper()
	ctx := context.Background()
	typ, err := r.rdb.Type(ctx, key).Result()
	require.NoError(t, err)
	var v any
	switch typ {
	case "string":
		v, err = r.rdb.Get(ctx, key).Result()
	case "hash":
		v, err = r.rdb.HGetAll(ctx, key).Result()
	case "list":
		v, err = r.rdb.LRange(ctx, key, 0, -1).Result()
	case "set":
		v, err = r.rdb.SMembers(ctx, key).Result()
	case "zset":
		v, err = r.rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
	case "stream":
		v, err = r.rdb.XRange(ctx, key, "-", "+").Result()
	default:
		t.Fatalf("key %s of type %s", key, typ)
	}
	require.NoError(t, err)
	return fmt.Sprint(v)
}
