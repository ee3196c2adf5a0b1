package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestWorkerRelaysWebhooksAndPollsWhereItMust runs a worker whose Halaxy
// vendor pushes webhooks (static header) and whose OAuth2 vendor cannot:
// a genuine webhook is in the stream when its 2xx arrives, a forged one is
// refused, and the vendor without webhooks is polled by an incremental
// sync (its pages are request jobs).
func TestWorkerRelaysWebhooksAndPollsWhereItMust(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, 4, time.Minute, "")
	hx := p.cfg.Vendors["halaxy-au"]
	hx.Webhooks = config.Webhooks{Verify: config.VerifyToken, Secret: secret.New("s3cret-webhook-header"),
		Header: "Authorization", FetchCredential: "clinic-01"}
	p.cfg.Vendors["halaxy-au"] = hx
	portal := p.cfg.Vendors["portal"]
	portal.Webhooks.FetchCredential = "patient-04"
	portal.Webhooks.Polling = config.Polling{Resources: []string{"Patient"}, Interval: config.Duration(time.Minute)}
	p.cfg.Vendors["portal"] = portal
	p.cfg.Vendors["open"] = config.Vendor{Kind: config.KindOAuth2, BaseURL: p.sbURL + "/oauth2/", TokenURL: p.sbURL + "/oauth2/token",
		Webhooks: config.Webhooks{Verify: config.VerifyNone, AcceptUnverified: true}}
	p.cfg.SetDefaults()
	require.NoError(t, p.cfg.Validate())

	p.scheduler()
	w := p.worker()
	sender, err := sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{
		URL: "http://" + w.addr + "/webhooks/halaxy-au", Scheme: sandbox.SchemeToken, Header: "Authorization",
		Secrets: []string{"s3cret-webhook-header"}, Compress: 1000, HTTPClient: testenv.HTTPClient(),
	})
	require.NoError(t, err)
	sub := sandbox.NewFHIRSubscription("sub-1", "", nil)
	ctx := context.Background()
	for _, body := range [][]byte{sub.Handshake(), sub.Notify(true, "Patient/p-1")} {
		res, err := sender.Send(ctx, sandbox.Delivery{Body: body})
		require.NoError(t, err)
		require.True(t, res.Delivered, "%+v", res.Attempts)
	}
	status, err := sender.SendTampered(ctx, sandbox.Delivery{Body: sub.Heartbeat()}, sandbox.TamperForged)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status)

	resp, err := testenv.HTTPClient().Post("http://"+w.addr+"/webhooks/portal", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "portal accepts no webhooks")

	// The delivery is in the stream (it was when its 2xx came), and the
	// portal's Patient resource is polled: an incremental sync, whose pages
	// (request jobs) arrive as sync events.
	var received, polled bool
	deadline := time.Now().Add(60 * time.Second)
	for !(received && polled) {
		require.True(t, time.Now().Before(deadline), "received %v, polled %v", received, polled)
		for _, e := range p.readStream(p.inspect.JS) {
			switch {
			case e.Env.Type == events.TypeWebhookReceived && e.Env.Subject == "webhook.halaxy-au.Patient":
				received = true
			case e.Env.Type == events.TypeSyncCompleted && strings.HasSuffix(e.Env.Subject, ".portal.patient-04"):
				polled = true
			}
		}
		if !(received && polled) {
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The metrics say so.
	resp, err = testenv.HTTPClient().Get("http://" + w.addr + "/metrics")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `tokenrelay_webhooks_total{outcome="accepted",vendor="halaxy-au"} 1`)
	require.Contains(t, string(b), `tokenrelay_webhooks_total{outcome="bad_signature",vendor="halaxy-au"} 1`)
	require.Contains(t, string(b), `tokenrelay_polling_active{resource="Patient",vendor="portal"} 1`)
	require.NotContains(t, p.logs.String(), "s3cret-webhook-header")
	// The vendor accepting webhooks unverified was warned about at start-up.
	require.Regexp(t, `"level":"warn".*"vendor":"open".*WITHOUT verification`, p.logs.String())
}

// TestALoneWorkerRelaysWebhooks runs a worker without any scheduler: it sets
// up the event stream itself, so that a webhook-only deployment, or a worker
// that starts first, relays deliveries instead of answering 503.
func TestALoneWorkerRelaysWebhooks(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, 1, time.Minute, "")
	hx := p.cfg.Vendors["halaxy-au"]
	hx.Webhooks = config.Webhooks{Verify: config.VerifyToken, Secret: secret.New("lone-worker-header"), Header: "Authorization"}
	p.cfg.Vendors["halaxy-au"] = hx
	p.cfg.SetDefaults()
	require.NoError(t, p.cfg.Validate())

	w := p.worker()
	sender, err := sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{
		URL: "http://" + w.addr + "/webhooks/halaxy-au", Scheme: sandbox.SchemeToken, Header: "Authorization",
		Secrets: []string{"lone-worker-header"}, Compress: 1000, HTTPClient: testenv.HTTPClient(),
	})
	require.NoError(t, err)
	sub := sandbox.NewFHIRSubscription("sub-lone", "", nil)
	res, err := sender.Send(context.Background(), sandbox.Delivery{Body: sub.Notify(true, "Patient/p-9")})
	require.NoError(t, err)
	require.True(t, res.Delivered, "%+v", res.Attempts)

	var found bool
	for _, e := range p.readStream(p.inspect.JS) {
		found = found || (e.Env.Type == events.TypeWebhookReceived && e.Env.Subject == "webhook.halaxy-au.Patient")
	}
	require.True(t, found, "the delivery answered 2xx should be in the stream")
}
