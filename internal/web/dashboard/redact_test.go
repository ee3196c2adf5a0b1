package dashboard

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// TestRedactPayloadByAllowList: the queue dashboard shows of a task's
// payload only the fields listed as safe for its type. Secrets under
// names no deny-list would guess (a vendor's custom auth header, a query
// parameter "sig", a new payload field), in a path, a body or a task of
// another type, are never shown; ids, numbers and safe headers are.
func TestRedactPayloadByAllowList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, taskType, payload string
		show, hide              []string
	}{
		{name: "refresh ids are shown", taskType: jobs.TypeTokenRefresh, payload: `{"credential":"clinic-42","generation":7}`,
			show: []string{`"credential": "clinic-42"`, `"generation": 7`}},
		{name: "a batch's items", taskType: jobs.TypeTokenRefreshBatch,
			payload: `{"items":[{"credential":"clinic-42","generation":7,"hint":"s3cr3t-a"}]}`,
			show:    []string{`"credential": "clinic-42"`, `"generation": 7`, `"hint": "«redacted»"`}, hide: []string{"s3cr3t-a"}},
		{name: "request headers by name", taskType: jobs.TypeVendorRequest,
			payload: `{"headers":{"Authorization":"Bearer s3cr3t-b","X-Vendor-Pass":"s3cr3t-c","X-Custom":"plain-s3cr3t-d","Accept":"application/fhir+json"}}`,
			show:    []string{`"Accept": "application/fhir+json"`, `"X-Custom": "«redacted»"`}, hide: []string{"s3cr3t-b", "s3cr3t-c", "s3cr3t-d"}},
		{name: "query values", taskType: jobs.TypeVendorRequest, payload: `{"query":{"sig":"s3cr3t-e","_count":["10","s3cr3t-f"]}}`,
			show: []string{`"sig": "«redacted»"`, `"_count": "«redacted»"`}, hide: []string{"s3cr3t-e", "s3cr3t-f"}},
		{name: "a field added later", taskType: jobs.TypeVendorRequest, payload: `{"id":"r-1","credential":"clinic-42","vendor_hint":"s3cr3t-g","extra":{"k":"s3cr3t-h"}}`,
			show: []string{`"id": "r-1"`, `"vendor_hint": "«redacted»"`, `"extra": "«redacted»"`}, hide: []string{"s3cr3t-g", "s3cr3t-h"}},
		{name: "an id that is not an id", taskType: jobs.TypeVendorRequest, payload: `{"credential":"clinic 42 s3cr3t-i","method":"GET s3cr3t-j"}`,
			hide: []string{"s3cr3t-i", "s3cr3t-j"}},
		{name: "the path's ids", taskType: jobs.TypeVendorRequest, payload: `{"path":"Patient/s3cr3t-k42/$everything?x=s3cr3t-l"}`,
			show: []string{`"path": "Patient/«id»/$everything"`}, hide: []string{"s3cr3t-k", "s3cr3t-l"}},
		{name: "a body, JSON or base64", taskType: jobs.TypeVendorRequest, payload: `{"body":{"text":"s3cr3t-m"},"idempotency_key":"s3cr3t-n"}`,
			show: []string{"bytes: not shown", `"idempotency_key": "«set»"`}, hide: []string{"s3cr3t-m", "s3cr3t-n"}},
		{name: "a poll", taskType: webhooks.TypePoll, payload: `{"vendor":"halaxy-au","resource":"Appointment","slot":42,"cursor":"s3cr3t-o"}`,
			show: []string{`"vendor": "halaxy-au"`, `"slot": 42`}, hide: []string{"s3cr3t-o"}},
		{name: "a task of another type", taskType: "webhook:test", payload: `{"credential":"clinic-42","note":"s3cr3t-p"}`,
			show: []string{`a "webhook:test" task: not shown`}, hide: []string{"s3cr3t-p", "clinic-42"}},
		{name: "not JSON", taskType: jobs.TypeVendorRequest, payload: `s3cr3t-q`, show: []string{"8 bytes, not a JSON object"}, hide: []string{"s3cr3t-q"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := RedactPayload(tc.taskType, []byte(tc.payload))
			for _, s := range tc.show {
				require.Contains(t, got, s)
			}
			for _, s := range tc.hide {
				require.NotContains(t, got, s)
			}
		})
	}
}
