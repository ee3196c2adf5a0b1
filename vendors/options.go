package vendors

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The problems of a URL option, as the errors of ParseHTTPURL,
// ParseEndpointURL and ParseBaseURL say them: each reads as the end of a
// sentence about the URL.
var (
	ErrNotHTTPURL = errors.New("is not an http(s) URL")
	ErrURLExtras  = errors.New("must not have a query, fragment or user info")
)

// ParseHTTPURL parses s as an absolute http or https URL with a host, or
// fails with ErrNotHTTPURL.
func ParseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, ErrNotHTTPURL
	}
	return u, nil
}

// ParseEndpointURL is ParseHTTPURL for a URL that must have no query,
// fragment or user info either (ErrURLExtras): a base URL, an endpoint
// whose URL the adapter builds on.
func ParseEndpointURL(s string) (*url.URL, error) {
	u, err := ParseHTTPURL(s)
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, ErrURLExtras
	}
	return u, nil
}

// ParseBaseURL reads an adapter's base_url option s: def when s is empty,
// with a trailing "/" added when it lacks one (so that paths resolve under
// it), then as ParseEndpointURL checks it. Its error names the option and
// the URL ("base_url \"...\" is not an http(s) URL") and ends with "; " and
// hint when hint is not empty; the adapter prefixes its name.
func ParseBaseURL(s, def, hint string) (*url.URL, error) {
	if s == "" {
		s = def
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	u, err := ParseEndpointURL(s)
	if err != nil {
		if hint != "" {
			return nil, fmt.Errorf("base_url %q %w; %s", s, err, hint)
		}
		return nil, fmt.Errorf("base_url %q %w", s, err)
	}
	return u, nil
}

// CheckUserAgent checks an adapter's user_agent option: one line, so that
// it cannot add a header.
func CheckUserAgent(ua string) error {
	if strings.ContainsAny(ua, "\r\n") {
		return errors.New("user_agent must be one line")
	}
	return nil
}
