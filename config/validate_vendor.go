package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
)

// validate checks one vendor instance at path ("vendors.NAME"), one
// section at a time, and then builds its adapter, so that a vendor that
// passes always starts.
func (v Vendor) validate(p *problems, path, name string) {
	if !validID.MatchString(name) {
		p.add(path, "vendor name %q must match %s", name, idPattern)
	}
	s, known := v.validateKind(p, path)
	v.validateEndpoints(p, path, s, known)
	v.validateScopes(p, path)
	v.validateUserAgent(p, path+".user_agent", s.UserAgent)
	if v.MaxTokenLifetime < 0 {
		p.add(path+".max_token_lifetime", "must not be negative (use 0 for no cap, or e.g. 15m)")
	}
	v.validateRotation(p, path+".rotate_every", s, known)
	if known {
		v.validateMode(p, path, s)
	}
	v.validateKeyPaths(p, path+".key_paths", s, known)
	v.validateRefresh(p, path)
	v.RateLimit.validate(p, path+".rate_limit")
	v.Webhooks.validate(p, path+".webhooks")
	if known {
		v.validateAdapter(p, path, s)
	}
}

func kindList() string { return strings.Join(kind.Names(), ", ") }

// validateKind returns the kind's Spec and whether the kind is known.
func (v Vendor) validateKind(p *problems, path string) (kind.Spec, bool) {
	s, known := v.Spec()
	switch {
	case v.Kind == "":
		p.add(path+".kind", "required (one of %s)", kindList())
	case !known:
		p.add(path+".kind", "unknown kind %s (one of %s)", p.show(path+".kind", string(v.Kind)), kindList())
	}
	return s, known
}

// validateEndpoints checks region, base_url and token_url.
func (v Vendor) validateEndpoints(p *problems, path string, s kind.Spec, known bool) {
	regionOK := !known || v.validateRegion(p, path+".region", s)
	switch {
	case v.BaseURL != "" && !strings.HasSuffix(v.BaseURL, "/"):
		p.add(path+".base_url", `must end with "/" (SetDefaults adds it)`)
	case v.BaseURL != "":
		checkEndpointURL(p, path+".base_url", v.BaseURL, "e.g. https://api.example.com/v1/")
	case known && regionOK:
		p.add(path+".base_url", "required for kind %s (the API root, e.g. https://api.example.com/v1/)", v.Kind)
	}
	switch {
	case v.TokenURL != "":
		checkURL(p, path+".token_url", v.TokenURL, []string{"https", "http"}, "e.g. https://auth.example.com/oauth/token")
	case s.RequiresTokenURL:
		p.add(path+".token_url", "required for kind %s (the token endpoint, e.g. https://auth.example.com/oauth/token)", v.Kind)
	}
}

// validateRegion reports whether the region is one of the kind's.
func (v Vendor) validateRegion(p *problems, path string, s kind.Spec) bool {
	switch {
	case s.DefaultRegion == "" && v.Region != "":
		p.add(path, "kind %s has no regions (remove it)", v.Kind)
	case s.DefaultRegion != "" && s.Regions[v.Region] == "":
		p.add(path, "unknown region %s for kind %s (%s)", p.show(path, v.Region), v.Kind, s.RegionHint)
	default:
		return true
	}
	return false
}

// checkEndpointURL is checkURL for an http(s) URL the adapters build on:
// no query, fragment or user info either (vendors.ParseEndpointURL).
func checkEndpointURL(p *problems, path, raw, example string) {
	checkURL(p, path, raw, []string{"https", "http"}, example)
	if _, err := vendors.ParseEndpointURL(raw); errors.Is(err, vendors.ErrURLExtras) {
		p.add(path, "%s (%s)", err, example)
	}
}

func (v Vendor) validateScopes(p *problems, path string) {
	for i, s := range v.Scopes {
		if s == "" || strings.ContainsFunc(s, unicode.IsSpace) {
			sp := fmt.Sprintf("%s.scopes[%d]", path, i)
			p.add(sp, "%s is not a scope (one per list item, without spaces)", p.show(sp, s))
		}
	}
}

// validateUserAgent checks user_agent with the kind's rule (the adapter's
// own check of its shape), and that it is one line of printable text.
func (v Vendor) validateUserAgent(p *problems, path string, rule kind.UserAgentRule) {
	ua := v.UserAgent
	switch {
	case rule.Required && ua == "":
		p.add(path, "required for kind %s, as %s (e.g. %s)", v.Kind, rule.Shape, rule.Example)
	case rule.Valid != nil && ua != "" && !rule.Valid(ua):
		p.add(path, "%s must look like %s, %s (e.g. %s)", p.show(path, ua), rule.Shape, rule.Why, rule.Example)
	case strings.ContainsFunc(ua, unicode.IsControl):
		p.add(path, "must be one line of printable text")
	}
}

func (v Vendor) validateRotation(p *problems, path string, s kind.Spec, known bool) {
	switch {
	case v.RotateEvery < 0:
		p.add(path, "must not be negative (use 0 for never, or e.g. 90d)")
	case v.RotateEvery > 0 && known && s.Rotation == kind.NoRotation:
		p.add(path, "kind %s cannot rotate keys (remove it; only %s can)", v.Kind, kind.RotatingKinds())
	}
}

// validateMode checks the mode of a vendor of a known kind, and that a
// mode that does not rotate keys has no rotate_every.
func (v Vendor) validateMode(p *problems, path string, s kind.Spec) {
	switch {
	case v.Mode == "":
	case s.Modes == nil:
		p.add(path+".mode", "kind %s has no modes (remove it)", v.Kind)
	case !slices.Contains(s.Modes, v.Mode):
		p.add(path+".mode", "unknown mode %s for kind %s (one of %s)", p.show(path+".mode", v.Mode), v.Kind, strings.Join(s.Modes, ", "))
	case s.Rotation != kind.NoRotation && s.RotatesIn(v.Mode) == kind.NoRotation && v.RotateEvery > 0:
		modes := strings.Join(s.RotatingModes, " or ")
		p.add(path+".rotate_every", "only mode %s rotates keys (remove it, or use mode %s)", modes, modes)
	}
}

func (v Vendor) validateKeyPaths(p *problems, path string, s kind.Spec, known bool) {
	if v.KeyPaths == (KeyPaths{}) {
		return
	}
	if known && !s.HasKeyPaths {
		p.add(path, "only kind %s has key-management paths (remove it)", kindsWith(func(s kind.Spec) bool { return s.HasKeyPaths }))
	} else if r := v.KeyPaths.Revoke; r != "" && !strings.Contains(r, "{id}") {
		p.add(path+".revoke", `%s must hold "{id}", where the key's id goes (e.g. keys/{id})`, p.show(path+".revoke", r))
	}
}

// kindsWith names the kinds for which has is true, separated by " or ".
func kindsWith(has func(kind.Spec) bool) string {
	var names []string
	for _, s := range kind.All() {
		if has(s) {
			names = append(names, s.Name)
		}
	}
	return strings.Join(names, " or ")
}

func (v Vendor) validateRefresh(p *problems, path string) {
	refreshAt := strconv.FormatFloat(v.RefreshAt, 'g', 4, 64)
	if !(v.RefreshAt > 0 && v.RefreshAt < 1) {
		p.add(path+".refresh_at", "%s must be between 0 and 1, both excluded (e.g. 0.6667 refreshes at two thirds of the lifetime)", refreshAt)
	} else if !(v.RefreshJitter >= 0 && v.RefreshJitter < v.RefreshAt) {
		p.add(path+".refresh_jitter", "%s must be at least 0 and less than refresh_at (%s); e.g. 0.1", strconv.FormatFloat(v.RefreshJitter, 'g', 4, 64), refreshAt)
	}
}

func (r RateLimit) validate(p *problems, path string) {
	validateRate(p, path, r.Limit, r.Per, "use 0 for no limit of ours", "1m or 1h", "requests per window, e.g. 500")
	if s := r.Slack; s < 0 || (s > 0 && r.Per > 0 && s >= r.Per/10) {
		p.add(path+".slack", "must be at least 0 and under a tenth of rate_limit.per (the network delay to the vendor, e.g. 50ms)")
	}
	if w := r.Window; w != "" && w != "sliding" && w != "fixed" {
		p.add(path+".window", "%q must be sliding or fixed (empty: fixed for %s, sliding for the others)", w,
			kindsWith(func(s kind.Spec) bool { return s.FixedWindow }))
	}
}

// validateAdapter builds the adapter of a vendor that has no problem so
// far, with the adapter's own checks of its options: what they refuse is
// refused here, not at start. The adapter's message may quote a value;
// values from the environment and URL passwords are left out of it.
func (v Vendor) validateAdapter(p *problems, path string, s kind.Spec) {
	if p.hasWithin(path) {
		return
	}
	_, err := s.New(v.AdapterOptions(nil))
	if err == nil {
		return
	}
	msg := err.Error()
	for field, value := range map[string]string{"base_url": v.BaseURL, "token_url": v.TokenURL, "user_agent": v.UserAgent} {
		if value == "" {
			continue
		}
		shown := value
		if u, err := url.Parse(value); err == nil && u.User != nil {
			shown = u.Redacted()
		}
		if p.fromEnv(path + "." + field) {
			shown = "(the value of " + field + ")"
		}
		msg = strings.ReplaceAll(msg, value, shown)
	}
	p.add(path, "the %s adapter refuses it: %s", v.Kind, msg)
}
