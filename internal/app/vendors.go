package app

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/fhirportal"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/oauth2cc"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
)

// BuildVendors makes the adapter and renewal policy of every configured
// vendor instance. httpClient is shared by all adapters (nil: a default
// with a 30 s timeout).
func BuildVendors(cfg *config.Config, httpClient *http.Client) (map[string]jobs.Vendor, error) {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second, Transport: tracing.Transport(&http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		})}
	}
	out := make(map[string]jobs.Vendor, len(cfg.Vendors))
	for name, v := range cfg.Vendors {
		tokens, err := tokenSource(name, v, httpClient)
		if err != nil {
			return nil, fmt.Errorf("vendors.%s: %w", name, err)
		}
		jv := jobs.Vendor{
			Tokens:      tokens,
			MaxLifetime: time.Duration(v.MaxTokenLifetime),
			Renewal:     policy.Renewal{At: v.RefreshAt, Jitter: v.RefreshJitter},
		}
		if v.RefreshJitter == 0 {
			jv.Renewal.Jitter = -1 // an explicit 0 turns jitter off
		}
		out[name] = jv
	}
	return out, nil
}

// tokenSource makes the adapter of one vendor instance.
func tokenSource(name string, v config.Vendor, hc *http.Client) (vendors.TokenSource, error) {
	switch v.Kind {
	case config.KindHalaxy:
		return halaxy.New(halaxy.Options{BaseURL: v.BaseURL, UserAgent: v.UserAgent, HTTPClient: hc})
	case config.KindOAuth2:
		return oauth2cc.New(oauth2cc.Options{TokenURL: v.TokenURL, Scopes: v.Scopes, UserAgent: v.UserAgent, HTTPClient: hc, VendorName: name})
	case config.KindRedox:
		return redox.New(redox.Options{BaseURL: v.BaseURL, TokenURL: v.TokenURL, Scopes: v.Scopes, HTTPClient: hc, VendorName: name})
	case config.KindRedoxLegacy:
		return redoxlegacy.New(redoxlegacy.Options{BaseURL: v.BaseURL, UserAgent: v.UserAgent, HTTPClient: hc, VendorName: name, Mode: redoxlegacy.Mode(v.Mode)})
	case config.KindFHIRPortal:
		return fhirportal.New(fhirportal.Options{BaseURL: v.BaseURL, TokenURL: v.TokenURL, Scopes: v.Scopes,
			UserAgent: v.UserAgent, HTTPClient: hc, VendorName: name})
	case config.KindHealthSync:
		return healthsync.New(healthsync.Options{BaseURL: v.BaseURL, TokenURL: v.TokenURL, Scopes: v.Scopes,
			UserAgent: v.UserAgent, HTTPClient: hc, VendorName: name, Mode: healthsync.Mode(v.Mode), KeyPaths: healthsync.KeyPaths(v.KeyPaths)})
	default:
		return nil, fmt.Errorf("kind %q is not supported by this build", v.Kind)
	}
}
