package adminclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// SyncStatus is a sync as the admin API (GET /admin/syncs/{id}) and the
// operator pages show it.
type SyncStatus struct {
	ID         string `json:"id"`
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	Resource   string `json:"resource"`
	Mode       string `json:"mode"`
	Batch      string `json:"batch,omitempty"`
	// State is running, completed, failed or cancelled.
	State string `json:"state"`
	// CancelRequested: a cancel was asked; the sync stops at its next page.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	Pages           int  `json:"pages"`
	Resources       int  `json:"resources"`
	// Total is the search's total as the vendor last said it, -1 unknown.
	Total     int       `json:"total"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// ErrorClass and Message say why a failed or cancelled sync stopped.
	ErrorClass string `json:"error_class,omitempty"`
	Message    string `json:"message,omitempty"`
	// Mark is the high-water mark a completed sync left.
	Mark time.Time `json:"mark,omitzero"`
}

// Progress is the fraction of the sync done, 0 to 1, when its total is
// known (else -1); a completed sync is 1.
func (s SyncStatus) Progress() float64 {
	switch {
	case s.State == "completed":
		return 1
	case s.Total <= 0:
		return -1
	}
	return min(float64(s.Resources)/float64(s.Total), 1)
}

// Rate is the resources delivered per second so far.
func (s SyncStatus) Rate() float64 {
	end := s.UpdatedAt
	if !s.EndedAt.IsZero() {
		end = s.EndedAt
	}
	d := end.Sub(s.StartedAt).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(s.Resources) / d
}

// ETA is the time a running sync still needs at its rate so far, -1 when
// it cannot be told.
func (s SyncStatus) ETA() time.Duration {
	rate := s.Rate()
	if s.State != "running" || s.Total <= 0 || rate <= 0 {
		return -1
	}
	left := max(s.Total-s.Resources, 0)
	return time.Duration(float64(left) / rate * float64(time.Second))
}

// SyncAccepted is the answer to a started sync, as request submissions
// are answered.
type SyncAccepted struct {
	ID       string `json:"id"`
	Accepted bool   `json:"accepted"`
}

// syncPath is the path of a credential's sync, plus suffix.
func syncPath(vendor, credential, id, suffix string) string {
	return "/admin/syncs/" + url.PathEscape(id) + suffix + "?" +
		url.Values{"vendor": {vendor}, "credential": {credential}}.Encode()
}

// SyncStart is a sync as POST /admin/syncs (and NATS sync.start) takes it:
// jobs.Sync's JSON, which this package does not import (jobs holds the
// worker's handlers too).
type SyncStart struct {
	// ID identifies the sync; empty: the worker makes one.
	ID string `json:"id,omitempty"`
	// Vendor is optional; when given it must be the credential's.
	Vendor     string `json:"vendor,omitempty"`
	Credential string `json:"credential"`
	// Resource is the search's path relative to the vendor's base URL
	// ("Patient", "records").
	Resource string `json:"resource"`
	// Query is the search's parameters ({"_count": ["100"]}).
	Query map[string][]string `json:"query,omitempty"`
	// Mode is "full" (default) or "incremental".
	Mode string `json:"mode,omitempty"`
	// Batch groups the sync's page requests with other request jobs for
	// fairness and cancellation; empty: one of its own.
	Batch string `json:"batch,omitempty"`
}

// StartSync starts a sync; it returns its id once accepted.
func (c *Client) StartSync(ctx context.Context, s SyncStart) (string, error) {
	body, err := jsonBody(s)
	if err != nil {
		return "", err
	}
	var out SyncAccepted
	if err := c.do(ctx, http.MethodPost, "/admin/syncs", body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// SyncStatus returns the progress of the sync id of a credential (a sync
// belongs to one vendor and credential).
func (c *Client) SyncStatus(ctx context.Context, vendor, credential, id string) (SyncStatus, error) {
	var out SyncStatus
	err := c.do(ctx, http.MethodGet, syncPath(vendor, credential, id, ""), nil, &out)
	return out, err
}

// CancelSync asks the sync id of a credential to stop at its next page and
// returns its status.
func (c *Client) CancelSync(ctx context.Context, vendor, credential, id string) (SyncStatus, error) {
	var out SyncStatus
	err := c.do(ctx, http.MethodPost, syncPath(vendor, credential, id, "/cancel"), nil, &out)
	return out, err
}
