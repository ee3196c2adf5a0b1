package app

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/policy"
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
		httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		}}
	}
	out := make(map[string]jobs.Vendor, len(cfg.Vendors))
	for name, v := range cfg.Vendors {
		jv := jobs.Vendor{
			MaxLifetime: time.Duration(v.MaxTokenLifetime),
			Renewal:     policy.Renewal{At: v.RefreshAt, Jitter: v.RefreshJitter},
		}
		if v.RefreshJitter == 0 {
			jv.Renewal.Jitter = -1 // an explicit 0 turns jitter off
		}
		switch v.Kind {
		case config.KindHalaxy:
			a, err := halaxy.New(halaxy.Options{BaseURL: v.BaseURL, UserAgent: v.UserAgent, HTTPClient: httpClient})
			if err != nil {
				return nil, fmt.Errorf("vendors.%s: %w", name, err)
			}
			jv.Tokens = a
		case config.KindOAuth2:
			a, err := oauth2cc.New(oauth2cc.Options{TokenURL: v.TokenURL, Scopes: v.Scopes, UserAgent: v.UserAgent,
				HTTPClient: httpClient, VendorName: name})
			if err != nil {
				return nil, fmt.Errorf("vendors.%s: %w", name, err)
			}
			jv.Tokens = a
		case config.KindRedox:
			a, err := redox.New(redox.Options{BaseURL: v.BaseURL, TokenURL: v.TokenURL, Scopes: v.Scopes, HTTPClient: httpClient, VendorName: name})
			if err != nil {
				return nil, fmt.Errorf("vendors.%s: %w", name, err)
			}
			jv.Tokens = a
		case config.KindRedoxLegacy:
			a, err := redoxlegacy.New(redoxlegacy.Options{BaseURL: v.BaseURL, UserAgent: v.UserAgent, HTTPClient: httpClient, VendorName: name})
			if err != nil {
				return nil, fmt.Errorf("vendors.%s: %w", name, err)
			}
			jv.Tokens = a
		case config.KindFHIRPortal:
			a, err := fhirportal.New(fhirportal.Options{BaseURL: v.BaseURL, TokenURL: v.TokenURL, Scopes: v.Scopes,
				UserAgent: v.UserAgent, HTTPClient: httpClient, VendorName: name})
			if err != nil {
				return nil, fmt.Errorf("vendors.%s: %w", name, err)
			}
			jv.Tokens = a
		case config.KindHealthSync:
			a, err := healthsync.New(healthsync.Options{BaseURL: v.BaseURL, TokenURL: v.TokenURL, Scopes: v.Scopes,
				UserAgent: v.UserAgent, HTTPClient: httpClient, VendorName: name})
			if err != nil {
				return nil, fmt.Errorf("vendors.%s: %w", name, err)
			}
			jv.Tokens = a
		default:
			return nil, fmt.Errorf("vendors.%s: kind %q is not supported by this build yet", name, v.Kind)
		}
		out[name] = jv
	}
	return out, nil
}
