package webhooks_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestNATSOutageLosesNothing stops the NATS server while a vendor sends:
// every delivery that got 2xx is in the stream afterwards, and those that
// got 503 arrive exactly once on the vendor's retry.
func TestNATSOutageLosesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, natsURL := testenv.StartNATS(t, 0, dir)
	port := srv.Addr().(*net.TCPAddr).Port
	r := newRig(t, rigOptions{natsURL: natsURL})

	sender, err := sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{
		URL: r.url("healthsync"), Scheme: sandbox.SchemeStandardWebhooks, Secrets: []string{hsSecret},
		Compress: 1000, // 5 s, 5 min, 30 min, 2 h → 5 ms, 300 ms, 1.8 s, 7.2 s
		Clock:    r.clock.Now, HTTPClient: testenv.HTTPClient(),
	})
	require.NoError(t, err)

	const n = 60
	results := make([]sandbox.SendResult, n)
	var wg sync.WaitGroup
	sent := make(chan int, n)
	wg.Go(func() {
		for i := range n {
			body := fmt.Appendf(nil, `{"type":"patient.updated","data":{"n":%d}}`, i)
			res, err := sender.Send(context.Background(), sandbox.Delivery{ID: fmt.Sprintf("msg_%03d", i), Body: body})
			if err != nil {
				t.Errorf("delivery %d: %v", i, err)
			}
			results[i] = res
			sent <- i
		}
	})

	// Let some through, then stop NATS until deliveries are refused.
	for range n / 3 {
		<-sent
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	deadline := time.Now().Add(30 * time.Second)
	for r.count("healthsync", webhooks.OutcomeUnavailable) < 3 {
		require.True(t, time.Now().Before(deadline), "no delivery was refused while NATS was down")
		time.Sleep(5 * time.Millisecond)
	}
	srv, err = testenv.RunNATS(port, dir)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	wg.Wait()

	retried := 0
	for i, res := range results {
		require.True(t, res.Delivered, "delivery %d never got 2xx: %+v", i, res.Attempts)
		if len(res.Attempts) > 1 {
			retried++
			for _, a := range res.Attempts[:len(res.Attempts)-1] {
				require.Contains(t, []int{0, 503}, a.Status, "delivery %d", i)
			}
		}
	}
	require.Positive(t, retried)

	perID := map[string]int{}
	for _, s := range r.stored() {
		perID[s.data.DeliveryID]++
	}
	require.Len(t, perID, n)
	for i := range n {
		require.Equal(t, 1, perID[fmt.Sprintf("id:msg_%03d", i)], "delivery %d", i)
	}
}
