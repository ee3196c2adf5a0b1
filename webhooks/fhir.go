package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tokenrelay/tokenrelay/webhooks/fhirnotify"
)

// Fetch reasons, the reason label of tokenrelay_webhook_fetches_total.
const (
	fetchIDOnly  = "id_only"
	fetchCatchUp = "catch_up"
	fetchPoll    = "poll"
)

// control answers a handshake or heartbeat: life, not data. A heartbeat
// whose event count moved past the last event seen means notifications
// were missed: they are caught up.
func (rc *Receiver) control(ctx context.Context, v Vendor, n *fhirnotify.Notification, now time.Time) outcome {
	if err := rc.state.touch(ctx, v.Name, now); err != nil {
		rc.d.Logger.Warn().Str("vendor", v.Name).Err(err).Msg("cannot record webhook liveness")
	}
	if n.Type == fhirnotify.TypeHandshake {
		if n.Subscription != "" {
			if err := rc.state.setEvent(ctx, v.Name, n.Subscription, n.EventsSinceSubscriptionStart, v.DedupWindow, true); err != nil {
				return unavailable("cannot record the subscription", err)
			}
		}
		return outcome{status: http.StatusOK, label: OutcomeHandshake, message: "subscription handshake"}
	}
	if n.Subscription != "" && n.EventsSinceSubscriptionStart > 0 {
		if err := rc.catchUp(ctx, v, n.Subscription, n.EventsSinceSubscriptionStart+1, n.EventsSinceSubscriptionStart, "hb"); err != nil {
			// The next heartbeat or notification sees the same gap.
			rc.d.Logger.Warn().Str("vendor", v.Name).Err(err).Msg("cannot catch up missed notifications yet")
		}
	}
	return outcome{status: http.StatusOK, label: OutcomeHeartbeat, message: "subscription " + n.Type}
}

// followUp does what an event notification asks beyond its relay: fetch
// the resources it only names, and catch up the events a gap says were
// missed.
func (rc *Receiver) followUp(ctx context.Context, v Vendor, n *fhirnotify.Notification, delivery string) error {
	for i, e := range n.Events {
		if e.Included {
			continue
		}
		typ, id, ok := fhirnotify.SplitReference(e.Focus)
		if !ok {
			continue
		}
		err := rc.fetch(ctx, v, fetchIDOnly, Fetch{
			Method: http.MethodGet, Path: typ + "/" + id,
			IdempotencyKey: "wh:" + v.Name + ":" + hashID(delivery) + ":" + strconv.Itoa(i),
		})
		if err != nil {
			return err
		}
	}
	if n.Subscription == "" {
		return nil
	}
	return rc.catchUp(ctx, v, n.Subscription, n.FirstEventNumber(), n.LastEventNumber(), hashID(delivery))
}

// catchUp fetches the events of a subscription between the last one seen
// and first (exclusive), if any are missing, then records last as seen.
func (rc *Receiver) catchUp(ctx context.Context, v Vendor, subscription string, first, last int64, key string) error {
	if last <= 0 {
		return nil
	}
	prev, err := rc.state.lastEvent(ctx, v.Name, subscription)
	if err != nil {
		return err
	}
	if prev >= 0 && first > prev+1 {
		_, subID, ok := fhirnotify.SplitReference(subscription)
		if ok {
			rc.d.Logger.Warn().Str("vendor", v.Name).Int64("missed_from", prev+1).Int64("missed_to", first-1).
				Msg("notifications were missed; fetching them")
			err := rc.fetch(ctx, v, fetchCatchUp, Fetch{
				Method: http.MethodGet, Path: "Subscription/" + subID + "/$events",
				Query: url.Values{
					"eventsSinceNumber": {strconv.FormatInt(prev+1, 10)},
					"eventsUntilNumber": {strconv.FormatInt(first-1, 10)},
					"content":           {"id-only"},
				},
				IdempotencyKey: fmt.Sprintf("wh:%s:%s:%d-%d:%s", v.Name, hashID(subscription), prev+1, first-1, key),
			})
			if err != nil {
				return err
			}
		}
	}
	return rc.state.setEvent(ctx, v.Name, subscription, last, v.DedupWindow, false)
}

// fetch enqueues one fetch with the vendor's fetch credential, or logs why
// it cannot (no fetcher, no credential) and goes on.
func (rc *Receiver) fetch(ctx context.Context, v Vendor, reason string, f Fetch) error {
	if rc.d.Fetcher == nil || v.FetchCredential == "" {
		rc.d.Logger.Warn().Str("vendor", v.Name).Str("reason", reason).Str("path", f.Path).
			Msg("a notification needs a fetch, but no fetch_credential (or fetcher) is configured; relayed as it is")
		return nil
	}
	f.Vendor, f.Credential, f.Batch = v.Name, v.FetchCredential, "webhooks-"+v.Name
	if err := rc.d.Fetcher.Fetch(ctx, f); err != nil {
		return fmt.Errorf("webhooks: enqueue %s fetch: %w", reason, err)
	}
	rc.d.Metrics.fetch(v.Name, reason)
	return nil
}
