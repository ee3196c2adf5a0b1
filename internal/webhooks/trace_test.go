package webhooks_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"

	"github.com/tokenrelay/tokenrelay/internal/tracing/tracingtest"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// A delivery is a trace of its own, rooted at its receipt (a traceparent
// the vendor sends is only linked, never a parent): its verification and
// publish are children, the published message carries the trace in its
// headers, and the fetches it triggers are enqueued under the receipt's
// span. No patient data (resource ids, body) or credential is in a span.
func TestDeliveryIsATrace(t *testing.T) {
	rec := tracingtest.Record(t)
	r := newRig(t, rigOptions{})
	sub := sandbox.NewFHIRSubscription("sub-1", "https://au-api.halaxy.com/main/topics/patient", r.clock.Now)
	const vendorTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	h := http.Header{"Authorization": {halaxyAuth}, "Traceparent": {"00-" + vendorTrace + "-00f067aa0ba902b7-01"}}
	status, answer := r.post("halaxy-au", h, sub.Notify(false, "Patient/phi-p-2"))
	require.Equal(t, 200, status, answer)

	var receive []string
	spans := map[string]int{}
	for _, s := range rec.Ended() {
		spans[s.Name()]++
		if s.Name() != "webhooks.receive" {
			continue
		}
		receive = append(receive, s.SpanContext().SpanID().String())
		require.False(t, s.Parent().IsValid(), "a delivery's trace is rooted at its receipt, not at the vendor's")
		require.NotEqual(t, vendorTrace, s.SpanContext().TraceID().String())
		require.Len(t, s.Links(), 1, "the vendor's trace context is linked")
		require.Equal(t, vendorTrace, s.Links()[0].SpanContext.TraceID().String())
		require.Contains(t, s.Links()[0].Attributes, attribute.Bool("tokenrelay.untrusted", true))
	}
	require.Len(t, receive, 1)
	for _, s := range rec.Ended() {
		if s.Name() == "webhooks.verify" || s.Name() == "events.publish" {
			require.Equal(t, receive[0], s.Parent().SpanID().String(), "%s is the receipt's child", s.Name())
		}
	}
	require.Equal(t, 1, spans["webhooks.verify"])
	require.Equal(t, 1, spans["events.publish"])

	got := r.stored()
	require.Len(t, got, 1)
	require.True(t, strings.HasPrefix(got[0].traceparent, "00-"), "the webhook.received message carries the trace: %q", got[0].traceparent)
	require.NotContains(t, got[0].traceparent, vendorTrace)

	require.Len(t, r.fetches.spans, 1)
	require.Equal(t, receive[0], r.fetches.spans[0].SpanID().String(), "the fetch is submitted under the receipt's span")

	tracingtest.RequireNothingOf(t, rec, "phi-p-2", strings.TrimPrefix(halaxyAuth, "Bearer "), "Patient/")
}
