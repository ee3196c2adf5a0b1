package store

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
)

// The fast reading of a keys bundle must agree with encoding/json on
// whatever encode writes, and leave to it whatever it cannot read.
func TestDecodeKeysAgreesWithJSON(t *testing.T) {
	t.Parallel()
	values := []string{
		"", "s", "client-secret-Zq81kLp02mNx7TtYb4Wv9dCe", `quote"inside`, `back\slash`,
		"<html>&amp;", "line\nbreak", "tab\there", "ünïcödé ✓", "\x7f", "\xff\xfe invalid utf-8",
		"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n",
	}
	for _, v := range values {
		for _, k := range []Keys{
			{ClientSecret: secret.New(v)},
			{PrivateKey: secret.New(v), KeyID: "kid-1"},
			{APIKey: secret.New(v)},
			{ClientSecret: secret.New("cs"), PrivateKey: secret.New(v), KeyID: v, APIKey: secret.New(v)},
		} {
			bundle, err := k.encode()
			require.NoError(t, err)
			if bundle.IsZero() {
				continue // nothing to seal
			}
			plain := []byte(bundle.Reveal())
			var want keysJSON
			require.NoError(t, json.Unmarshal(plain, &want))
			got, err := decodeKeys(plain)
			require.NoError(t, err)
			require.Equal(t, want.keys(), got, "%q", plain)
		}
	}
}

func TestDecodeKeysFastRefusesWhatItDoesNotKnow(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, `{`, `{}x`, `{"cs":"a",}`, `{"cs":"a" }`, `{ "cs":"a"}`, `{"cs":1}`, `{"xx":"a"}`,
		`{"cs":"a\u0041"}`, `{"cs":"a","pk"}`, `{"cs":"a"`, `["cs","a"]`, "{\"cs\":\"a\x01\"}",
	} {
		_, ok := decodeKeysFast([]byte(in))
		require.False(t, ok, "%q", in)
	}
	k, ok := decodeKeysFast([]byte(`{}`))
	require.True(t, ok)
	require.Equal(t, Keys{ClientSecret: secret.New(""), PrivateKey: secret.New(""), APIKey: secret.New("")}, k)
	k, ok = decodeKeysFast([]byte(`{"cs":"s3crÃ©t","pk":"p","kid":"k","ak":"a"}`))
	require.True(t, ok, "what encode writes for plain values is read without encoding/json")
	require.Equal(t, Keys{ClientSecret: secret.New("s3crÃ©t"), PrivateKey: secret.New("p"), KeyID: "k", APIKey: secret.New("a")}, k)
	_, err := decodeKeys([]byte(`not json`))
	require.ErrorContains(t, err, "not in the expected format")
}
