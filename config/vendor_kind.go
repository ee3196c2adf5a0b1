package config

import (
	"cmp"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
)

// Spec returns the description of the vendor's kind (package vendors/kind)
// and whether the kind is known; a validated Config knows every kind.
func (v Vendor) Spec() (kind.Spec, bool) { return kind.Lookup(string(v.Kind)) }

// KeyRotation says how the vendor's keys are rotated, for its kind and
// mode (kind.NoRotation: they cannot be).
func (v Vendor) KeyRotation() kind.Rotation {
	s, _ := v.Spec()
	return s.RotatesIn(v.Mode)
}

// AdapterOptions are the options the vendor's adapter is built from;
// httpClient sends its requests (nil: the adapter's default).
func (v Vendor) AdapterOptions(httpClient *http.Client) kind.Options {
	return kind.Options{VendorName: v.Name, BaseURL: v.BaseURL, TokenURL: v.TokenURL, Scopes: v.Scopes,
		UserAgent: v.UserAgent, Mode: v.Mode, KeyPaths: healthsync.KeyPaths(v.KeyPaths), HTTPClient: httpClient}
}

// NewAdapter builds the vendor's adapter with httpClient (nil: the
// adapter's default). A vendor of a validated Config always builds.
func (v Vendor) NewAdapter(httpClient *http.Client) (vendors.TokenSource, error) {
	s, ok := v.Spec()
	if !ok {
		return nil, fmt.Errorf("kind %q is not supported by this build", v.Kind)
	}
	return s.New(v.AdapterOptions(httpClient))
}

func (v *Vendor) setDefaults(name string, jitterSet bool) {
	v.Name = name
	if s, known := v.Spec(); known {
		v.setKindDefaults(s)
	}
	if v.BaseURL != "" && !strings.HasSuffix(v.BaseURL, "/") {
		v.BaseURL += "/"
	}
	if v.RefreshAt == 0 {
		v.RefreshAt = DefaultRefreshAt
	}
	if v.RefreshJitter == 0 && !jitterSet {
		v.RefreshJitter = DefaultRefreshJitter
	}
	v.Webhooks.setDefaults(v.Spec)
}

// setKindDefaults fills what the kind gives a default: region, base URL,
// token lifetime cap, rotation period and rate limit.
func (v *Vendor) setKindDefaults(s kind.Spec) {
	setString(&v.Region, s.DefaultRegion)
	// An unknown region leaves BaseURL empty; Validate reports the region.
	setString(&v.BaseURL, s.Regions[v.Region])
	setDuration(&v.MaxTokenLifetime, Duration(s.MaxTokenLifetime))
	if s.RotatesIn(v.Mode) != kind.NoRotation {
		setDuration(&v.RotateEvery, Duration(s.RotateEvery))
	}
	if v.RateLimit.Limit == 0 {
		v.RateLimit.Limit = s.RateLimit.Limit
	}
	setDuration(&v.RateLimit.Per, Duration(s.RateLimit.Per))
}

// setDefaults fills the verification method and its header; spec gives
// the vendor's kind, whose token header may differ.
func (w *Webhooks) setDefaults(spec func() (kind.Spec, bool)) {
	if w.Verify == "" {
		w.Verify = VerifyNone
	}
	if w.Header != "" {
		return
	}
	switch w.Verify {
	case VerifyToken:
		s, _ := spec()
		w.Header = cmp.Or(s.WebhookTokenHeader, "Authorization")
	case VerifyHMACSHA256:
		w.Header = "X-Signature"
	}
}
