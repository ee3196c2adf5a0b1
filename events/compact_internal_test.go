package events

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// appendRawJSON takes exactly the valid JSON texts of printable ASCII
// without <, > or &: it never takes what is not JSON (an event must be JSON
// to be published) and takes every such text, spaced or not (so a usual
// answer is not sent the slow way); what it writes is what json.Marshal
// writes. validJSON, which uses it, answers as json.Valid.
func FuzzAppendRawJSON(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Bundle","total":2,"entry":[{"resource":{"id":"1","name":[{"family":"Smith Jones"}]}}]}`,
		`[]`, `{}`, `[[]]`, `[{}]`, `{"a":{}}`, `""`, `"a\"b\\c\/\b\f\n\r\t\u00e9\uD834\uDD1E"`, `0`, `-0`, `-0.5e+10`,
		`1E-2`, `12.34`, `true`, `false`, `null`, `[1,true,false,null,"x",{"k":[]}]`,
		// not JSON, or not compact
		``, ` `, `{`, `}`, `[`, `]`, `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a" :1}`, `[1 ,2]`, `01`, `-`,
		`1.`, `.5`, `1e`, `1e+`, `+1`, `tru`, `truee`, `nul`, `"abc`, `"\x"`, `"\u12"`, `"\u12G4"`, `"<"`, `"a&b"`,
		"\"\x01\"", "\"\xc3\xa9\"", `[1]]`, `{}{}`, `[1][2]`, `{"a":1}x`, `"a"1`, `1 `, "\t1", `[}`, `{]`, `{"a":1]`,
		`"\u2028"`, `NaN`, `Infinity`, `1.5E07`, "\"\x7f\"",
		// spaced
		"{\"a\": 1}\n", " [ 1 , { \"b\" : \"c d\" } ] ", "\t\r\n\"x\"", "[\n]", "{ }", `{"a" : "b\" c" }`,
		"1 2", "[1 2]", "{\"a\" 1}", " ",
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth)))
	f.Add([]byte(strings.Repeat("[", maxNestingDepth+1) + strings.Repeat("]", maxNestingDepth+1)))
	f.Fuzz(func(t *testing.T, s []byte) {
		plain := !bytes.ContainsAny(s, "<>&") && !slices.ContainsFunc(s, func(c byte) bool { return c >= 0x7f })
		if validJSON(s) != json.Valid(s) {
			t.Fatalf("validJSON(%q) = %v, json.Valid %v", s, validJSON(s), json.Valid(s))
		}
		want := json.Valid(s) && plain
		out, ok := appendRawJSON([]byte("x"), s)
		if ok != want {
			t.Fatalf("appendRawJSON(%q) took it: %v, json.Valid and plain: %v", s, ok, want)
		}
		if !ok {
			return
		}
		marshalled, err := json.Marshal(json.RawMessage(s))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "x"+string(marshalled) {
			t.Fatalf("appendRawJSON(%q) wrote %q, json.Marshal %q", s, out[1:], marshalled)
		}
	})
}

// A sandbox-like search answer is taken in one pass.
func BenchmarkAppendRawJSON(b *testing.B) {
	body := []byte(`{"resourceType":"Bundle","type":"searchset","total":100000,"entry":[` +
		strings.Repeat(`{"fullUrl":"http://127.0.0.1:1/fhir/Patient/1001","resource":{"resourceType":"Patient","id":"1001","meta":{"versionId":"1","lastUpdated":"2026-12-07T15:00:00Z"},"name":[{"use":"official","family":"Smith 7","given":["Jo Ann"],"text":"Jo Ann Smith"}],"gender":"female","birthDate":"1970-01-01"},"search":{"mode":"match"}},`, 9) +
		`{"fullUrl":"x","search":{"mode":"match"}}]}`)
	buf := make([]byte, 0, len(body))
	b.Run("appendRawJSON", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, ok := appendRawJSON(buf, body); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("json.Valid+json.Compact", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var out bytes.Buffer
		for b.Loop() {
			out.Reset()
			if !json.Valid(body) || json.Compact(&out, body) != nil {
				b.Fatal("not taken")
			}
		}
	})
}
