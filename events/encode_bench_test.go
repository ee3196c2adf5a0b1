package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// fhirBundle is a search answer like the sandbox's: n Patients, compact
// JSON with spaces inside its strings.
func fhirBundle(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":100000,"entry":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"http://127.0.0.1:1/fhir/Patient/%d","resource":{"resourceType":"Patient","id":"%d","meta":{"versionId":"1","lastUpdated":"2026-12-07T15:00:00Z"},"name":[{"use":"official","family":"Smith %d","given":["Jo Ann"],"text":"Jo Ann Smith"}],"gender":"female","birthDate":"1970-01-01"},"search":{"mode":"match"}}`, 1001+i, 1001+i, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkSealRequestCompleted is the outcome event of one request job:
// built and sealed into its outbox entry (events.SealNew, as the handler).
func BenchmarkSealRequestCompleted(b *testing.B) {
	kr, err := seal.NewKeyring([]byte(strings.Repeat("k", seal.KeySize)))
	require.NoError(b, err)
	body := fhirBundle(10)
	at := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		data := events.RequestCompleted{ID: "req-1", Vendor: "halaxy-au", Credential: "clinic-1", Status: 200,
			Headers: map[string]string{"Content-Type": "application/fhir+json"}, Body: json.RawMessage(body),
			BodyEncoding: "json", BodySize: len(body), Attempts: 1, CompletedAt: at}
		if _, _, err := events.SealNew(ctx, kr, events.TypeRequestCompleted, "halaxy-au", "clinic-1", at, data); err != nil {
			b.Fatal(err)
		}
	}
}
