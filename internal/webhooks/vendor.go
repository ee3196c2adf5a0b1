// Package webhooks receives vendor webhooks on the worker (POST
// /webhooks/{vendor}), checks they are genuine (webhooks/verify), and relays
// each exactly once into JetStream as a webhook.received event on
// webhook.<vendor>.<event-type>, acknowledging the vendor only once the
// event is stored. Redeliveries are recognised for days (Redis), not only
// for JetStream's two minutes. FHIR subscription notifications
// (webhooks/fhirnotify) are understood: handshakes and heartbeats are
// answered and count as life, id-only notifications and gaps in the event
// numbers enqueue fetches through the shared rate budget, bounded so that
// no notification, forged or replayed, spends a vendor's budget without
// limit: so many resources per notification, a fetch rate per vendor
// shared by every worker, so many events per catch-up. Only an id its
// signature covers names a delivery (else its body), and no body is kept
// in Redis. Where a vendor
// cannot push, or its webhooks have gone quiet, the Poller polls instead,
// and stops by itself when they flow again.
package webhooks

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/webhooks/verify"
)

// Vendor is how webhooks from one vendor instance are received.
type Vendor struct {
	// Name is the vendor instance name, as in /webhooks/{vendor}.
	Name string
	// Verifier checks each delivery.
	Verifier verify.Verifier
	// Handshake, when set, answers Redox's endpoint verification (a
	// verification-token and a challenge, in a POST body or a GET query).
	Handshake *verify.Token
	// SecretHeader is the header holding the secret itself (token
	// verification), never kept in an event. "" when none.
	SecretHeader string
	// SignatureHeader is a header holding a signature that is kept in the
	// event so that it can be replayed and checked again. "" when none.
	SignatureHeader string
	// MaxBody is the largest body accepted. Default 1 MiB.
	MaxBody int64
	// DedupWindow is how long a delivery id is remembered. Default 7 days.
	DedupWindow time.Duration
	// FetchCredential fetches what id-only notifications name; "" for none.
	FetchCredential string
	// MaxFetches bounds the resources one notification has fetched.
	// Default 20, and never more than FetchLimit.
	MaxFetches int
	// FetchLimit fetches in any window of FetchPer may be triggered by
	// notifications, every worker together. Default 60 per minute.
	FetchLimit int
	FetchPer   time.Duration
	// MaxCatchUp bounds the missed events one catch-up asks for. Default 100.
	MaxCatchUp int64
}

func (v *Vendor) setDefaults() {
	if v.MaxBody <= 0 {
		v.MaxBody = config.DefaultWebhookMaxBody
	}
	if v.DedupWindow <= 0 {
		v.DedupWindow = time.Duration(config.DefaultWebhookDedupWindow)
	}
	if v.FetchLimit <= 0 || v.FetchPer <= 0 {
		v.FetchLimit, v.FetchPer = config.DefaultWebhookFetchRate.Limit, time.Duration(config.DefaultWebhookFetchRate.Per)
	}
	if v.MaxFetches <= 0 {
		v.MaxFetches = config.DefaultWebhookMaxFetchesPerDelivery
	}
	// A notification's fetches are taken from the rate all at once: more
	// than the rate allows would never pass.
	v.MaxFetches = min(v.MaxFetches, v.FetchLimit)
	if v.MaxCatchUp <= 0 {
		v.MaxCatchUp = config.DefaultWebhookMaxCatchUp
	}
}

// fetchRateOf is a vendor's fetch_rate, or its default: a share of the
// vendor's rate_limit, or DefaultWebhookFetchRate without one.
func fetchRateOf(cv config.Vendor) (int, time.Duration) {
	fr := cv.Webhooks.FetchRate
	switch {
	case fr.Limit > 0 && fr.Per > 0:
		return fr.Limit, time.Duration(fr.Per)
	case cv.RateLimit.Limit > 0 && cv.RateLimit.Per > 0:
		return max(1, cv.RateLimit.Limit/config.DefaultWebhookFetchRateShare), time.Duration(cv.RateLimit.Per)
	}
	return config.DefaultWebhookFetchRate.Limit, time.Duration(config.DefaultWebhookFetchRate.Per)
}

// VendorsFromConfig builds the receiving side of every vendor that accepts
// webhooks. A vendor with verify none and without accept_unverified is left
// out (its webhooks get 404); one with accept_unverified is in, and named in
// unverified so that the caller warns at start-up.
func VendorsFromConfig(vendors map[string]config.Vendor) (out map[string]Vendor, unverified []string, err error) {
	out = make(map[string]Vendor)
	for name, cv := range vendors {
		w := cv.Webhooks
		secrets := []string{w.Secret.Reveal()}
		for _, s := range w.PreviousSecrets {
			secrets = append(secrets, s.Reveal())
		}
		v := Vendor{
			Name:            name,
			MaxBody:         int64(w.MaxBody),
			DedupWindow:     time.Duration(w.DedupWindow),
			FetchCredential: w.FetchCredential,
			MaxFetches:      w.MaxFetchesPerDelivery,
			MaxCatchUp:      int64(w.MaxCatchUp),
		}
		v.FetchLimit, v.FetchPer = fetchRateOf(cv)
		switch w.Verify {
		case config.VerifyNone, "":
			if !w.AcceptUnverified {
				continue
			}
			v.Verifier = verify.None{}
			unverified = append(unverified, name)
		case config.VerifyToken:
			tok, err := verify.NewToken(w.Header, secrets)
			if err != nil {
				return nil, nil, fmt.Errorf("webhooks: vendor %s: %w", name, err)
			}
			v.Verifier, v.SecretHeader = tok, w.Header
			if spec, _ := cv.Spec(); spec.WebhookHandshake {
				v.Handshake = tok
			}
		case config.VerifyHMACSHA256:
			h, err := verify.NewHMACSHA256(w.Header, secrets)
			if err != nil {
				return nil, nil, fmt.Errorf("webhooks: vendor %s: %w", name, err)
			}
			v.Verifier, v.SignatureHeader = h, w.Header
		case config.VerifyStandardWebhooks:
			s, err := verify.NewStandardWebhooks(secrets, time.Duration(w.Tolerance))
			if err != nil {
				return nil, nil, fmt.Errorf("webhooks: vendor %s: %w", name, err)
			}
			v.Verifier, v.SignatureHeader = s, verify.HeaderSignature
		default:
			return nil, nil, fmt.Errorf("webhooks: vendor %s: unknown verify method %q", name, w.Verify)
		}
		v.setDefaults()
		out[name] = v
	}
	sort.Strings(unverified)
	return out, unverified, nil
}

// maxEventType bounds the event-type subject token.
const maxEventType = 64

// sanitizeToken turns a vendor's event type into one NATS subject token:
// letters, digits, "_" and "-" are kept, everything else (dots, spaces,
// wildcards) becomes "_"; "" becomes "unknown".
func sanitizeToken(s string) string {
	if len(s) > maxEventType {
		s = s[:maxEventType]
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
