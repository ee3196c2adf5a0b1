package config

import (
	"fmt"
	"slices"
	"strings"
)

// validate checks a vendor's webhooks section at path.
func (w Webhooks) validate(p *problems, path string) {
	w.validateVerify(p, path)
	w.validateHeaderAndLimits(p, path)
	w.validatePolling(p, path)
	validateWebhookBounds(p, path, w)
}

// validateVerify checks the method against the secrets and
// accept_unverified.
func (w Webhooks) validateVerify(p *problems, path string) {
	switch {
	case !slices.Contains(verifies, w.Verify):
		names := make([]string, len(verifies))
		for i, m := range verifies {
			names[i] = string(m)
		}
		p.add(path+".verify", "unknown method %s (one of %s)", p.show(path+".verify", string(w.Verify)), strings.Join(names, ", "))
	case w.Verify == VerifyNone && (!w.Secret.IsZero() || len(w.PreviousSecrets) > 0):
		p.add(path+".verify", "is none, but a secret is set (set verify to token, hmac-sha256 or standard-webhooks, or remove the secret)")
	case w.Verify != VerifyNone && w.Secret.IsZero():
		p.add(path+".secret", "%s", required(p, path+".secret", "when verify is "+string(w.Verify)))
	case w.Verify != VerifyNone && w.AcceptUnverified:
		p.add(path+".accept_unverified", "only applies to verify: none (remove it: verify %s checks every delivery)", w.Verify)
	}
	for i, s := range w.PreviousSecrets {
		if s.IsZero() {
			f := fmt.Sprintf("%s.previous_secrets[%d]", path, i)
			p.add(f, "%s", required(p, f, "(remove the empty entry)"))
		}
	}
}

func (w Webhooks) validateHeaderAndLimits(p *problems, path string) {
	if h := w.Header; h != "" && !validHeaderName(h) {
		p.add(path+".header", "%s is not an HTTP header name (e.g. X-Signature)", p.show(path+".header", h))
	}
	if w.MaxBody < 0 {
		p.add(path+".max_body", "must not be negative (bytes; 0 for the default 1048576)")
	}
	for _, d := range []struct {
		field string
		value Duration
	}{
		{"tolerance", w.Tolerance},
		{"dedup_window", w.DedupWindow},
		{"polling.interval", w.Polling.Interval},
		{"polling.silent_after", w.Polling.SilentAfter},
	} {
		if d.value < 0 {
			p.add(path+"."+d.field, "must not be negative (0 for the default)")
		}
	}
}

// validatePolling checks the polled resources and the credential that
// fetches them.
func (w Webhooks) validatePolling(p *problems, path string) {
	if c := w.FetchCredential; c != "" && !validID.MatchString(c) {
		p.add(path+".fetch_credential", "%s must be a credential id (%s)", p.show(path+".fetch_credential", c), idPattern)
	}
	for i, r := range w.Polling.Resources {
		if !validID.MatchString(r) {
			f := fmt.Sprintf("%s.polling.resources[%d]", path, i)
			p.add(f, "%s is not a resource type (%s, e.g. Patient)", p.show(f, r), idPattern)
		}
	}
	if len(w.Polling.Resources) > 0 && w.FetchCredential == "" {
		p.add(path+".fetch_credential", "required with polling.resources (the credential whose token polls)")
	}
}

// validateWebhookBounds checks the bounds on what one webhook may cost:
// the fetches it triggers, and how long a signed id is remembered against
// a replay within the timestamp tolerance.
func validateWebhookBounds(p *problems, wh string, w Webhooks) {
	if w.MaxFetchesPerDelivery < 0 {
		p.add(wh+".max_fetches_per_delivery", "must not be negative (0 for the default %d)", DefaultWebhookMaxFetchesPerDelivery)
	}
	if w.MaxCatchUp < 0 {
		p.add(wh+".max_catch_up", "must not be negative (0 for the default %d)", DefaultWebhookMaxCatchUp)
	}
	rateOK := validateRate(p, wh+".fetch_rate", w.FetchRate.Limit, w.FetchRate.Per, "0 for the default", "1m", "fetches per window, e.g. 60")
	if rateOK && w.FetchRate.Limit > 0 && w.MaxFetchesPerDelivery > w.FetchRate.Limit {
		p.add(wh+".max_fetches_per_delivery", "must not exceed fetch_rate.limit (%d): such a notification could never be fetched", w.FetchRate.Limit)
	}
	if w.Verify == VerifyStandardWebhooks {
		tol, dedup := w.Tolerance, w.DedupWindow
		if tol <= 0 {
			tol = DefaultWebhookTolerance
		}
		if dedup <= 0 {
			dedup = DefaultWebhookDedupWindow
		}
		if dedup < 2*tol {
			p.add(wh+".dedup_window", "must be at least twice tolerance (%s): a signed delivery is accepted for that long, and must be recognised while it is", 2*tol)
		}
	}
}
