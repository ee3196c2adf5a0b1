package webhooks

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/webhooks/fhirnotify"
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
		if err := rc.catchUp(ctx, v, n.Subscription, n.EventsSinceSubscriptionStart+1, n.EventsSinceSubscriptionStart, "hb", now); err != nil {
			// The next heartbeat or notification sees the same gap.
			rc.d.Logger.Warn().Str("vendor", v.Name).Err(err).Msg("cannot catch up missed notifications yet")
		}
	}
	return outcome{status: http.StatusOK, label: OutcomeHeartbeat, message: "subscription " + n.Type}
}

// plan lists the fetches an event notification needs: each resource it
// names but does not include, once, at most v.MaxFetches of them; the
// others are dropped, logged and counted.
func (rc *Receiver) plan(v Vendor, n *fhirnotify.Notification, delivery string) []Fetch {
	var out []Fetch
	named := map[string]bool{}
	dropped := 0
	for i, e := range n.Events {
		if e.Included {
			continue
		}
		typ, id, ok := fhirnotify.SplitReference(e.Focus)
		if !ok || named[typ+"/"+id] {
			continue
		}
		named[typ+"/"+id] = true
		if len(out) >= v.MaxFetches {
			dropped++
			continue
		}
		out = append(out, Fetch{
			Method: http.MethodGet, Path: typ + "/" + id,
			IdempotencyKey: "wh:" + v.Name + ":" + hashID(delivery) + ":" + strconv.Itoa(i),
		})
	}
	if dropped > 0 {
		rc.d.Logger.Warn().Str("vendor", v.Name).Int("fetched", len(out)).Int("dropped", dropped).
			Msg("a notification names more resources than max_fetches_per_delivery; the others are not fetched")
		rc.d.Metrics.limited(v.Name, LimitPerDelivery, dropped)
	}
	return out
}

// fetching says whether the vendor's notifications make fetches at all.
func (rc *Receiver) fetching(v Vendor) bool {
	return rc.d.Fetcher != nil && v.FetchCredential != ""
}

// reserve takes n fetches from the vendor's fetch rate; when it cannot, o
// is the throttled answer.
func (rc *Receiver) reserve(ctx context.Context, v Vendor, n int, now time.Time) (o outcome, ok bool) {
	if n == 0 || !rc.fetching(v) {
		return outcome{}, true
	}
	wait, err := rc.state.takeFetches(ctx, v.Name, n, v.FetchLimit, v.FetchPer, now)
	if err != nil {
		return unavailable("cannot check the fetch rate", err), false
	}
	if wait == 0 {
		return outcome{}, true
	}
	rc.d.Metrics.limited(v.Name, LimitRate, n)
	return outcome{status: http.StatusServiceUnavailable, label: OutcomeThrottled,
		message:    "the fetches this notification needs exceed this vendor's fetch_rate; retry later",
		retryAfter: int(math.Ceil(wait.Seconds()))}, false
}

// followUp does what an event notification asks beyond its relay: fetch
// the resources it only names (fetches, taken from the fetch rate
// already), and catch up the events a gap says were missed.
func (rc *Receiver) followUp(ctx context.Context, v Vendor, n *fhirnotify.Notification, fetches []Fetch, delivery string, now time.Time) error {
	for _, f := range fetches {
		if err := rc.fetch(ctx, v, fetchIDOnly, f); err != nil {
			return err
		}
	}
	if n.Subscription == "" {
		return nil
	}
	return rc.catchUp(ctx, v, n.Subscription, n.FirstEventNumber(), n.LastEventNumber(), hashID(delivery), now)
}

// catchUp fetches the events of a subscription between the last one seen
// and first (exclusive), if any are missing, then records last as seen. It
// asks for v.MaxCatchUp events at most, and only when the fetch rate
// allows: otherwise last is not recorded, and the next notification or
// heartbeat sees the gap again.
func (rc *Receiver) catchUp(ctx context.Context, v Vendor, subscription string, first, last int64, key string, now time.Time) error {
	if last <= 0 {
		return nil
	}
	prev, err := rc.state.lastEvent(ctx, v.Name, subscription)
	if err != nil {
		return err
	}
	if prev >= 0 && first > prev+1 {
		from, until := prev+1, first-1
		log := rc.d.Logger.Warn().Str("vendor", v.Name).Int64("missed_from", from).Int64("missed_to", until)
		if until-from >= v.MaxCatchUp {
			until = from + v.MaxCatchUp - 1
			log = log.Int64("asked_to", until)
			rc.d.Metrics.limited(v.Name, LimitCatchUp, 1)
		}
		_, subID, ok := fhirnotify.SplitReference(subscription)
		if ok && rc.fetching(v) {
			wait, err := rc.state.takeFetches(ctx, v.Name, 1, v.FetchLimit, v.FetchPer, now)
			if err != nil {
				return err
			}
			if wait > 0 {
				rc.d.Metrics.limited(v.Name, LimitRate, 1)
				log.Msg("notifications were missed, but the fetch_rate is reached; catching up later")
				return nil
			}
		}
		if !ok {
			log.Msg("notifications were missed, but the subscription reference cannot be asked for them")
		} else {
			log.Msg("notifications were missed; fetching them (beyond asked_to, if set, run a sync)")
			err := rc.fetch(ctx, v, fetchCatchUp, Fetch{
				Method: http.MethodGet, Path: "Subscription/" + subID + "/$events",
				Query: url.Values{
					"eventsSinceNumber": {strconv.FormatInt(from, 10)},
					"eventsUntilNumber": {strconv.FormatInt(until, 10)},
					"content":           {"id-only"},
				},
				IdempotencyKey: fmt.Sprintf("wh:%s:%s:%d-%d:%s", v.Name, hashID(subscription), from, until, key),
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
	if !rc.fetching(v) {
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
