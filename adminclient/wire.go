package adminclient

import "time"

// The admin API's JSON, which its server (the worker) answers with and
// this client sends and reads. A field, once shipped, is never renamed.

// Limits of the admin API.
const (
	// MaxBody is the largest body of a single-credential request (and so
	// the longest line of an import).
	MaxBody = 1 << 20
	// MaxImport is the largest import body.
	MaxImport = 256 << 20
)

// Problem is the body of every error answer.
type Problem struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// CredentialInput is a credential as the admin API accepts it (one JSON
// object, or one line of an import). Secrets are plain strings here and
// are never sent back.
type CredentialInput struct {
	ID           string `json:"id"`
	Vendor       string `json:"vendor"`
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	PrivateKey   string `json:"private_key,omitempty"`
	KeyID        string `json:"key_id,omitempty"`
	APIKey       string `json:"api_key,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// CredentialView is a credential as the admin API shows it: no secret.
type CredentialView struct {
	ID                  string    `json:"id"`
	Vendor              string    `json:"vendor"`
	State               string    `json:"state"`
	Generation          int64     `json:"generation"`
	ClientIDFingerprint string    `json:"client_id_fingerprint,omitempty"`
	ExpiresAt           time.Time `json:"expires_at,omitzero"`
	NextRefresh         time.Time `json:"next_refresh,omitzero"`
	Failures            int       `json:"failures"`
	LastErrorClass      string    `json:"last_error_class,omitempty"`
	LastError           string    `json:"last_error,omitempty"`
	UpdatedAt           time.Time `json:"updated_at,omitzero"`
}

// AddResult is the answer to adding one credential.
type AddResult struct {
	ID     string `json:"id"`
	Result string `json:"result"` // created, updated or unchanged
}

// ImportResult sums up an import.
type ImportResult struct {
	Lines     int            `json:"lines"`
	Created   int            `json:"created"`
	Updated   int            `json:"updated"`
	Unchanged int            `json:"unchanged"`
	Failed    []ImportFailed `json:"failed"`
}

// ImportFailed is one line that did not land, and why.
type ImportFailed struct {
	Line  int    `json:"line"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error"`
}

// RevokeInput is the optional body of a revocation.
type RevokeInput struct {
	Reason string `json:"reason,omitempty"`
}

// EnableInput is the body of a re-enable: new key material, all optional.
type EnableInput struct {
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	PrivateKey   string `json:"private_key,omitempty"`
	KeyID        string `json:"key_id,omitempty"`
	APIKey       string `json:"api_key,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// RotateResult is the answer to a rotation asked for now.
type RotateResult struct {
	ID     string `json:"id"`
	Vendor string `json:"vendor"`
	// Queued is true: the rotation runs on the critical queue (create the
	// new key, verify it, switch, revoke the old one) and announces itself
	// with key.rotated, then key.revoked (reason rotated).
	Queued bool `json:"queued"`
}

// Accepted is the answer to a request job submitted.
type Accepted struct {
	ID       string `json:"id"`
	Accepted bool   `json:"accepted"`
}

// BatchStatus is a batch's progress: of the requests of one credential
// submitted with that batch id.
type BatchStatus struct {
	ID         string `json:"id"`
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	// Total is how many requests were accepted into the batch.
	Total int64 `json:"total"`
	// Queued have not run yet (waiting for their turn, or released to a
	// worker); Waiting wait for the budget, a 429's pause or a retry;
	// Running are being sent; Done completed; Failed failed; Cancelled were
	// stopped by a cancel before they ran.
	Queued    int64 `json:"queued"`
	Waiting   int64 `json:"waiting"`
	Running   int64 `json:"running"`
	Done      int64 `json:"done"`
	Failed    int64 `json:"failed"`
	Cancelled int64 `json:"cancelled"`
	// CancelRequested is set once the batch was cancelled.
	CancelRequested bool `json:"cancel_requested"`
	// Rate is the requests ended per second since the first one started.
	Rate float64 `json:"rate"`
	// CreatedAt is the first submission, StartedAt the first run, LastAt
	// the latest end; EstimatedFinish extrapolates Rate (zero when unknown
	// or finished).
	CreatedAt       time.Time `json:"created_at,omitzero"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	LastAt          time.Time `json:"last_at,omitzero"`
	EstimatedFinish time.Time `json:"estimated_finish,omitzero"`
}

// Finished reports whether every request of the batch has ended.
func (s BatchStatus) Finished() bool { return s.Done+s.Failed+s.Cancelled >= s.Total }
