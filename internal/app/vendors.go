package app

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
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
		v.Name = name
		tokens, err := v.NewAdapter(httpClient)
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
