package verify_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/webhooks/verify"
)

var (
	now       = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	secretA   = "whsec_" + base64.StdEncoding.EncodeToString([]byte("key-A-0123456789abcdef"))
	secretB   = "whsec_" + base64.StdEncoding.EncodeToString([]byte("key-B-0123456789abcdef"))
	secretOff = "whsec_" + base64.StdEncoding.EncodeToString([]byte("someone-else's-key"))
	body      = []byte(`{"type":"patient.updated","data":{"id":"p1"}}`)
)

func sign(t *testing.T, secret, id string, ts time.Time, b []byte) string {
	t.Helper()
	key, err := verify.DecodeStandardSecret(secret)
	require.NoError(t, err)
	return verify.SignStandard(key, id, ts.Unix(), b)
}

func standardHeaders(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set(verify.HeaderID, id)
	}
	if !ts.IsZero() {
		h.Set(verify.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	}
	if sig != "" {
		h.Set(verify.HeaderSignature, sig)
	}
	return h
}

func TestStandardWebhooks(t *testing.T) {
	t.Parallel()
	v, err := verify.NewStandardWebhooks([]string{secretA}, 5*time.Minute)
	require.NoError(t, err)
	good := sign(t, secretA, "msg_1", now, body)
	tests := []struct {
		name string
		h    http.Header
		body []byte
		want error
	}{
		{"valid", standardHeaders("msg_1", now, good), body, nil},
		{"valid 4m59s old", standardHeaders("msg_1", now.Add(-299*time.Second), sign(t, secretA, "msg_1", now.Add(-299*time.Second), body)), body, nil},
		{"valid 4m59s ahead", standardHeaders("msg_1", now.Add(299*time.Second), sign(t, secretA, "msg_1", now.Add(299*time.Second), body)), body, nil},
		{"valid among other versions and junk", standardHeaders("msg_1", now, "v1a,abc v2,xyz v1,!!! "+good), body, nil},
		{"missing signature", standardHeaders("msg_1", now, ""), body, verify.ErrMissingSignature},
		{"missing id", standardHeaders("", now, good), body, verify.ErrMissingSignature},
		{"missing timestamp", standardHeaders("msg_1", time.Time{}, good), body, verify.ErrMissingSignature},
		{"timestamp not a number", func() http.Header {
			h := standardHeaders("msg_1", now, good)
			h.Set(verify.HeaderTimestamp, "yesterday")
			return h
		}(), body, verify.ErrBadSignature},
		{"stale", standardHeaders("msg_1", now.Add(-6*time.Minute), sign(t, secretA, "msg_1", now.Add(-6*time.Minute), body)), body, verify.ErrStale},
		{"future", standardHeaders("msg_1", now.Add(6*time.Minute), sign(t, secretA, "msg_1", now.Add(6*time.Minute), body)), body, verify.ErrStale},
		{"wrong secret", standardHeaders("msg_1", now, sign(t, secretOff, "msg_1", now, body)), body, verify.ErrBadSignature},
		{"body changed", standardHeaders("msg_1", now, good), []byte(`{"type":"patient.updated","data":{"id":"p2"}}`), verify.ErrBadSignature},
		{"id changed", standardHeaders("msg_2", now, good), body, verify.ErrBadSignature},
		{"timestamp changed", standardHeaders("msg_1", now.Add(time.Second), good), body, verify.ErrBadSignature},
		{"no v1 prefix", standardHeaders("msg_1", now, good[3:]), body, verify.ErrBadSignature},
		{"not base64", standardHeaders("msg_1", now, "v1,%%%"), body, verify.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.Verify(tt.h, tt.body, now)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestStandardWebhooksSecretRotation(t *testing.T) {
	t.Parallel()
	// The receiver knows the new secret B and the old A.
	v, err := verify.NewStandardWebhooks([]string{secretB, secretA}, 0)
	require.NoError(t, err)
	both := sign(t, secretA, "msg_9", now, body) + " " + sign(t, secretB, "msg_9", now, body)
	for name, sig := range map[string]string{
		"both signatures":   both,
		"old secret only":   sign(t, secretA, "msg_9", now, body),
		"new secret only":   sign(t, secretB, "msg_9", now, body),
		"new one after bad": sign(t, secretOff, "msg_9", now, body) + " " + sign(t, secretB, "msg_9", now, body),
	} {
		require.NoError(t, v.Verify(standardHeaders("msg_9", now, sig), body, now), name)
	}

	// A receiver that already dropped A accepts the pair (B is in it) but
	// not A alone.
	onlyB, err := verify.NewStandardWebhooks([]string{secretB}, 0)
	require.NoError(t, err)
	require.NoError(t, onlyB.Verify(standardHeaders("msg_9", now, both), body, now))
	require.ErrorIs(t, onlyB.Verify(standardHeaders("msg_9", now, sign(t, secretA, "msg_9", now, body)), body, now), verify.ErrBadSignature)
}

func TestNewStandardWebhooksRefusesBadSecrets(t *testing.T) {
	t.Parallel()
	_, err := verify.NewStandardWebhooks(nil, 0)
	require.Error(t, err)
	_, err = verify.NewStandardWebhooks([]string{"whsec_not base64!"}, 0)
	require.ErrorContains(t, err, "secret 1")
	require.NotContains(t, err.Error(), "not base64!")
}

func TestToken(t *testing.T) {
	t.Parallel()
	v, err := verify.NewToken("verification-token", []string{"tok-new", "tok-old"})
	require.NoError(t, err)
	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"current token", "tok-new", nil},
		{"previous token", "tok-old", nil},
		{"bearer form", "Bearer tok-new", nil},
		{"missing", "", verify.ErrMissingSignature},
		{"wrong", "tok-neW", verify.ErrBadSignature},
		{"prefix of the token", "tok-ne", verify.ErrBadSignature},
		{"token plus more", "tok-new-and-more", verify.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.value != "" {
				h.Set("Verification-Token", tt.value)
			}
			err := v.Verify(h, body, now)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
	_, err = verify.NewToken("Authorization", []string{""})
	require.Error(t, err)
}

func TestHMACSHA256(t *testing.T) {
	t.Parallel()
	v, err := verify.NewHMACSHA256("X-Signature", []string{"hmac-key", "old-key"})
	require.NoError(t, err)
	mac := func(key string, b []byte) []byte {
		m := hmac.New(sha256.New, []byte(key))
		m.Write(b)
		return m.Sum(nil)
	}
	good := mac("hmac-key", body)
	tests := []struct {
		name, value string
		want        error
	}{
		{"hex", hex.EncodeToString(good), nil},
		{"base64", base64.StdEncoding.EncodeToString(good), nil},
		{"sha256= prefix", "sha256=" + hex.EncodeToString(good), nil},
		{"previous secret", hex.EncodeToString(mac("old-key", body)), nil},
		{"missing", "", verify.ErrMissingSignature},
		{"wrong key", hex.EncodeToString(mac("other", body)), verify.ErrBadSignature},
		{"other body", hex.EncodeToString(mac("hmac-key", []byte("{}"))), verify.ErrBadSignature},
		{"garbage", "zzz", verify.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.value != "" {
				h.Set("X-Signature", tt.value)
			}
			err := v.Verify(h, body, now)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestNoneAcceptsEverything(t *testing.T) {
	t.Parallel()
	require.NoError(t, verify.None{}.Verify(http.Header{}, nil, now))
}

// FuzzStandardWebhooks: whatever the headers and body, Verify never panics,
// accepts only a genuine signature, and a genuine one always passes.
func FuzzStandardWebhooks(f *testing.F) {
	key, _ := verify.DecodeStandardSecret(secretA)
	f.Add("msg_1", now.Unix(), "", body)
	f.Add("msg_1", now.Unix(), verify.SignStandard(key, "msg_1", now.Unix(), body), body)
	f.Add("", int64(0), "v1,", []byte{})
	f.Add("x", int64(-1)<<62, "v1,AAAA v1,BBBB", []byte("not json"))
	v, err := verify.NewStandardWebhooks([]string{secretA}, 5*time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id string, ts int64, sig string, b []byte) {
		h := http.Header{}
		h.Set(verify.HeaderID, id)
		h.Set(verify.HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(verify.HeaderSignature, sig)
		err := v.Verify(h, b, now)
		genuine := verify.SignStandard(key, h.Get(verify.HeaderID), ts, b)
		if err == nil && sig != genuine && !containsField(sig, genuine) {
			t.Fatalf("accepted a signature that is not the genuine one")
		}
		h.Set(verify.HeaderSignature, genuine)
		inTolerance := ts >= now.Add(-5*time.Minute).Unix() && ts <= now.Add(5*time.Minute).Unix()
		if err := v.Verify(h, b, now); inTolerance && h.Get(verify.HeaderID) != "" && err != nil {
			t.Fatalf("refused a genuine signature: %v", err)
		}
	})
}

func containsField(s, f string) bool {
	for i := 0; i+len(f) <= len(s); i++ {
		if s[i:i+len(f)] == f {
			return true
		}
	}
	return false
}

// TestOnlyStandardWebhooksSignsAnID: only a scheme whose signature covers
// the delivery id may name deliveries by it; the others sign the body (or
// nothing), so a webhook-id sent to them is anyone's to change.
func TestOnlyStandardWebhooksSignsAnID(t *testing.T) {
	t.Parallel()
	sw, err := verify.NewStandardWebhooks([]string{secretA}, 0)
	require.NoError(t, err)
	h := http.Header{}
	h.Set(verify.HeaderID, "msg_1")
	var v verify.Verifier = sw
	s, ok := v.(verify.IDSigner)
	require.True(t, ok)
	require.Equal(t, "msg_1", s.SignedID(h))

	hm, err := verify.NewHMACSHA256("X-Signature", []string{"k"})
	require.NoError(t, err)
	tok, err := verify.NewToken("Authorization", []string{"t"})
	require.NoError(t, err)
	for _, v := range []verify.Verifier{hm, tok, verify.None{}} {
		_, ok := v.(verify.IDSigner)
		require.False(t, ok, "%T", v)
	}
}
