package secret

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestValueNeverPrintsItself(t *testing.T) {
	t.Parallel()
	const raw = "s3cr3t-value-that-must-not-leak"
	v := New(raw)
	type wrapper struct {
		Secret Value `json:"secret"`
	}
	js, err := json.Marshal(wrapper{v})
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{
		fmt.Sprint(v), fmt.Sprintf("%v %+v %#v %s", v, v, v, v),
		fmt.Sprintf("%+v", wrapper{v}), fmt.Sprintf("%#v", wrapper{v}), string(js),
	}
	for _, out := range outputs {
		if strings.Contains(out, raw) {
			t.Errorf("secret leaked in %q", out)
		}
		if !strings.Contains(out, v.Fingerprint()) {
			t.Errorf("fingerprint missing from %q", out)
		}
	}
	if v.Reveal() != raw {
		t.Fatalf("Reveal() = %q", v.Reveal())
	}
}

func TestFingerprintStableAndDistinct(t *testing.T) {
	t.Parallel()
	a1, a2 := New("a"), New("a")
	if a1.Fingerprint() != a2.Fingerprint() {
		t.Fatal("fingerprint not stable")
	}
	if New("a").Fingerprint() == New("b").Fingerprint() {
		t.Fatal("fingerprints collide")
	}
	if New("").Fingerprint() != "" {
		t.Fatal("empty secret has a fingerprint")
	}
}
