// Package adminclient is the Go client of the worker's admin API, used by
// the tokenrelay command line: add, import, list, rotate, revoke and
// re-enable credentials, and submit request jobs and follow their batches,
// on a running installation. It owns the API's JSON (wire.go), which the
// server imports, so that a program using it links none of the server.
package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Client calls the admin API of one installation.
type Client struct {
	// BaseURL is the worker's HTTP address, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is the admin bearer token.
	Token secret.Value
	// HTTP defaults to a client with a 60 s timeout.
	HTTP *http.Client
}

// defaultHTTP has a transport of its own, not http.DefaultTransport.
var defaultHTTP = &http.Client{Timeout: 60 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}

// Error is a refusal by the admin API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("adminclient: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token.Reveal())
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("adminclient: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("adminclient: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var p Problem
		if json.Unmarshal(raw, &p) != nil || p.Error == "" {
			p = Problem{Error: "http_error", Message: strings.TrimSpace(string(raw))}
		}
		return &Error{Status: resp.StatusCode, Code: p.Error, Message: p.Message}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("adminclient: decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

func jsonBody(v any) (io.Reader, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, errors.New("adminclient: encode request")
	}
	return bytes.NewReader(raw), nil
}

// Add adds or updates one credential.
func (c *Client) Add(ctx context.Context, in CredentialInput) (AddResult, error) {
	var out AddResult
	body, err := jsonBody(in)
	if err != nil {
		return out, err
	}
	return out, c.do(ctx, http.MethodPost, "/admin/credentials", body, &out)
}

// List lists credentials, filtered by vendor and state when not empty.
func (c *Client) List(ctx context.Context, vendor, state string) ([]CredentialView, error) {
	q := url.Values{}
	if vendor != "" {
		q.Set("vendor", vendor)
	}
	if state != "" {
		q.Set("state", state)
	}
	path := "/admin/credentials"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []CredentialView
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Import sends JSON lines (one credential each) in one request.
func (c *Client) Import(ctx context.Context, lines []byte) (ImportResult, error) {
	var out ImportResult
	return out, c.do(ctx, http.MethodPost, "/admin/credentials/import", bytes.NewReader(lines), &out)
}

// Revoke revokes a credential now.
func (c *Client) Revoke(ctx context.Context, id, reason string) error {
	body, err := jsonBody(RevokeInput{Reason: reason})
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/admin/credentials/"+url.PathEscape(id)+"/revoke", body, nil)
}

// Rotate asks for a rotation of a credential's key now; it returns once
// the rotation is queued.
func (c *Client) Rotate(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/admin/credentials/"+url.PathEscape(id)+"/rotate", nil, nil)
}

// Enable re-enables a credential, with new keys where in has them.
func (c *Client) Enable(ctx context.Context, id string, in EnableInput) error {
	body, err := jsonBody(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/admin/credentials/"+url.PathEscape(id)+"/enable", body, nil)
}
