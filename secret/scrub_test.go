package secret_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
)

// sec has characters every encoding writes differently: '/', '+', ' ',
// '&', '"', '<', a non-ASCII letter, and bytes whose base64 has '+' and '/'.
const sec = `s3cr/et+key &"<é>` + "\xfb\xff" + `tail-0123456789`

func jsonOf(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// Every spelling of the secret is redacted, in the middle of other text,
// and what surrounds it survives.
func TestScrubSpellings(t *testing.T) {
	t.Parallel()
	basic := base64.StdEncoding.EncodeToString([]byte("client-1:" + sec))
	basicEsc := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape("client 1") + ":" + url.QueryEscape(sec)))
	tests := map[string]string{
		"verbatim":             sec,
		"query escaped":        url.QueryEscape(sec),
		"path escaped":         url.PathEscape(sec),
		"lower-case escapes":   strings.ToLower(url.QueryEscape(sec)),
		"json":                 jsonOf(sec),
		"json twice":           jsonOf(jsonOf(sec)),
		"hex":                  hex.EncodeToString([]byte(sec)),
		"HEX":                  strings.ToUpper(hex.EncodeToString([]byte(sec))),
		"base64":               base64.StdEncoding.EncodeToString([]byte(sec)),
		"base64 url":           base64.URLEncoding.EncodeToString([]byte(sec)),
		"base64 raw":           base64.RawStdEncoding.EncodeToString([]byte(sec)),
		"base64 raw url":       base64.RawURLEncoding.EncodeToString([]byte(sec)),
		"basic id:secret":      "Basic " + basic,
		"basic form-encoded":   "Basic " + basicEsc,
		"basic :secret":        base64.StdEncoding.EncodeToString([]byte(":" + sec)),
		"basic secret:":        base64.StdEncoding.EncodeToString([]byte(sec + ":")),
		"base64 in a longer":   base64.StdEncoding.EncodeToString([]byte(`{"k":"` + sec + `","n":1}`)),
		"base64 offset 2":      base64.URLEncoding.EncodeToString([]byte("ab" + sec + "zz")),
		"json of path escaped": jsonOf(url.PathEscape(sec)),
		"query of base64":      url.QueryEscape(base64.StdEncoding.EncodeToString([]byte(sec))),
		"middle run":           sec[len(sec)-12:],
		"prefix":               sec[:secret.MinRun],
		"half":                 sec[:len(sec)/2],
		"prefix query":         url.QueryEscape(sec)[:12],
		"prefix base64 basic":  basic[:len(basic)-8],
	}
	sc := secret.NewScrubber(secret.New(sec)).AddBasic("client-1", secret.New(sec)).AddBasic("client 1", secret.New(sec))
	for name, spelling := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := sc.Scrub("before " + spelling + " after")
			require.True(t, strings.HasPrefix(got, "before "), got)
			require.True(t, strings.HasSuffix(got, " after"), got)
			require.Contains(t, got, secret.Redacted)
			requireNoSpelling(t, got, sec)
			require.NotContains(t, got, spelling)
		})
	}
}

// requireNoSpelling fails when text has MinPrefix characters of a common
// spelling of s outside a redaction.
func requireNoSpelling(t *testing.T, text, s string) {
	t.Helper()
	for _, piece := range strings.Split(text, secret.Redacted) {
		for _, sp := range []string{s, url.QueryEscape(s), url.PathEscape(s), jsonOf(s),
			base64.StdEncoding.EncodeToString([]byte(s)), base64.URLEncoding.EncodeToString([]byte(s)),
			hex.EncodeToString([]byte(s))} {
			if len(sp) >= secret.MinRun {
				require.NotContains(t, piece, sp[:secret.MinRun], "in %q", text)
			}
		}
	}
}

// The lines of a PEM key are secrets of their own.
func TestScrubPEMLines(t *testing.T) {
	t.Parallel()
	l1, l2 := "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7", "Vv+Z3/Lc0P4mQ1Z3yVhGQ5pYJ8sE9dQ2oY3zL9o1xF5lU2bA8nCq"
	pem := "-----BEGIN PRIVATE KEY-----\n" + l1 + "\n" + l2 + "\n-----END PRIVATE KEY-----\n"
	sc := secret.NewScrubber(secret.New(pem))
	for _, text := range []string{"key " + l2 + " bad", "json " + jsonOf(pem), "form " + url.QueryEscape(pem), l1 + l2} {
		got := sc.Scrub(text)
		require.NotContains(t, got, l1[:secret.MinRun])
		require.NotContains(t, got, l2[:secret.MinRun])
		require.NotContains(t, got, url.QueryEscape(l2)[:secret.MinRun])
	}
}

// A client id alone is no secret: the start of a Basic credential that
// encodes the id only is left alone.
func TestScrubBasicKeepsTheID(t *testing.T) {
	t.Parallel()
	sc := secret.NewScrubber().AddBasic("a-rather-long-client-id", secret.New("the-secret-value"))
	idOnly := base64.StdEncoding.EncodeToString([]byte("a-rather-long-client-id"))[:24]
	require.Equal(t, "id "+idOnly, sc.Scrub("id "+idOnly))
	require.Equal(t, "client a-rather-long-client-id", sc.Scrub("client a-rather-long-client-id"))
}

// Nothing to do leaves the text alone; a nil or empty scrubber too; a
// short secret is redacted whole only.
func TestScrubLeavesOtherTextAlone(t *testing.T) {
	t.Parallel()
	var none *secret.Scrubber
	require.Equal(t, "x s3cr/et+key y", none.Scrub("x s3cr/et+key y"))
	require.Equal(t, "abc", secret.NewScrubber(secret.Value{}).Scrub("abc"))
	sc := secret.NewScrubber(secret.New("pin42"))
	require.Equal(t, "a "+secret.Redacted+" b pin4", sc.Scrub("a pin42 b pin4"))
	require.Equal(t, "invalid_client: unknown client", secret.NewScrubber(secret.New(sec)).Scrub("invalid_client: unknown client"))
}

// Excerpt is bounded and cut on a rune boundary; a secret cut by the bound
// leaves no beginning of it behind, however short.
func TestScrubExcerpt(t *testing.T) {
	t.Parallel()
	sc := secret.NewScrubber(secret.New("abcdefghijklmnop"))
	require.Equal(t, "xxxxxxxxx"+secret.Redacted, sc.Excerpt("xxxxxxxxxabcdefghijklmnop", 30))
	// The bound falls three characters into the secret.
	got := sc.Excerpt(strings.Repeat("x", 17)+"abcdefghijklmnop", 20)
	require.Equal(t, strings.Repeat("x", 17)+"[re", got)
	got = sc.Excerpt(strings.Repeat("é", 1000), 51)
	require.True(t, utf8.ValidString(got))
	require.Len(t, got, 50)
	huge := strings.Repeat("y", 1<<20) + "abcdefghijklmnop"
	require.Equal(t, strings.Repeat("y", 200), sc.Excerpt(huge, 200))
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ab", secret.Truncate("abc", 2))
	require.Equal(t, "abc", secret.Truncate("abc", 5))
	require.Equal(t, "", secret.Truncate("abc", 0))
	require.Equal(t, "a", secret.Truncate("aé", 2))
	require.Equal(t, "日", secret.Truncate("日本語", 5), "a multi-byte rune is never split")
	require.Equal(t, "abc", secret.Elide("abc", 3))
	require.Equal(t, "日…", secret.Elide("日本語", 4))
	require.True(t, utf8.ValidString(secret.Elide("é"+strings.Repeat("ü", 40), 32)))
}

// FuzzScrub puts a secret, in one of its spellings, in random text: what
// the scrubber leaves never holds MinPrefix characters of a spelling, and
// it never panics.
func FuzzScrub(f *testing.F) {
	f.Add("s3cret-value-1234", "before ", " after", uint8(0), 200)
	f.Add(`we"ird/+ &`, "x", "", uint8(3), 5)
	f.Add("aaaaaaaaaaaa", "aaaa", "aaaa", uint8(1), 9)
	f.Fuzz(func(t *testing.T, s, before, after string, form uint8, limit int) {
		if len(s) < secret.MinRun || len(s) > 64 || strings.ContainsAny(s, "\r\n") {
			t.Skip()
		}
		forms := []string{s, url.QueryEscape(s), url.PathEscape(s), jsonOf(s),
			base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s)),
			hex.EncodeToString([]byte(s)), base64.StdEncoding.EncodeToString([]byte("id:" + s))}
		text := before + forms[int(form)%len(forms)] + after
		sc := secret.NewScrubber(secret.New(s)).AddBasic("id", secret.New(s))
		for _, out := range []string{sc.Scrub(text), sc.Excerpt(text, limit)} {
			for _, piece := range strings.Split(out, secret.Redacted) {
				require.NotContains(t, piece, s[:secret.MinRun])
				require.NotContains(t, piece, url.QueryEscape(s)[:secret.MinRun])
			}
		}
		require.LessOrEqual(t, len(sc.Excerpt(text, limit)), max(limit, 0))
	})
}

// An error scrubbed keeps its chain and loses its secret.
func TestScrubError(t *testing.T) {
	t.Parallel()
	base := errors.New("base")
	err := fmt.Errorf("vendor said %s: %w", sec, base)
	sc := secret.NewScrubber(secret.New(sec))
	got := sc.Error(err)
	require.ErrorIs(t, got, base)
	require.NotContains(t, got.Error(), sec[:secret.MinRun])
	require.Equal(t, "vendor said "+secret.Redacted+": base", got.Error())
	require.Same(t, base, sc.Error(base), "nothing to scrub, the same error")
	require.NoError(t, sc.Error(nil))
}

// BenchmarkScrub measures what quoting one vendor error costs: building a
// credential's scrubber and scrubbing a short text.
func BenchmarkScrub(b *testing.B) {
	cs, tok := secret.New("cs-"+strings.Repeat("k", 40)), secret.New("at-"+strings.Repeat("t", 60))
	text := "invalid_client: the client could not be authenticated; see the documentation at https://example.com/docs/oauth"
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			secret.NewScrubber(cs, tok).AddBasic("client-id-1", cs)
		}
	})
	sc := secret.NewScrubber(cs, tok).AddBasic("client-id-1", cs)
	b.Run("scrub", func(b *testing.B) {
		for b.Loop() {
			sc.Scrub(text)
		}
	})
}

// BenchmarkScrubPEM measures building the scrubber of a 2048-bit RSA key.
func BenchmarkScrubPEM(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(b, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(b, err)
	pk := secret.New(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	for b.Loop() {
		secret.NewScrubber(pk)
	}
}
