package jobs

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Sync modes.
const (
	// SyncFull pages through the whole search.
	SyncFull = "full"
	// SyncIncremental asks only for what changed since the last run of the
	// same search reached its last page (_lastUpdated=gt<mark>, the mark
	// taken from the vendor's clock, minus a small overlap); with no mark
	// yet it is a full sync.
	SyncIncremental = "incremental"
)

// Sync pages through one vendor search to its end with a credential's
// token: every page is a request job (through the vendor account's shared
// budget and the batch fairness of request jobs), published as
// sync.page.<vendor>.<credential>, then sync.completed or sync.failed. It is
// also the JSON a service sends on NATS (sync.start) or to POST
// /admin/syncs.
type Sync struct {
	// ID identifies the sync in its events, status and cancel. Default: a
	// new UUID. [A-Za-z0-9_-]{1,64}.
	ID string `json:"id"`
	// Vendor is optional; when given it must be the credential's.
	Vendor string `json:"vendor,omitempty"`
	// Credential is the id of the credential whose token pages.
	Credential string `json:"credential"`
	// Resource is the search's path relative to the vendor's base URL
	// ("Patient", "records").
	Resource string `json:"resource"`
	// Query is the search's parameters ({"_count":"100"}); in JSON each
	// value is a string or a list.
	Query Query `json:"query,omitempty"`
	// Mode is SyncFull (default) or SyncIncremental.
	Mode string `json:"mode,omitempty"`
	// Batch groups the sync's page requests with other request jobs for
	// fairness and cancellation. Default "sync-<id>".
	Batch string `json:"batch,omitempty"`
}

// NewSync returns a sync, with a fresh id, of resource with credential's
// token in mode (SyncFull or SyncIncremental). Set Query, Vendor and Batch
// as needed before starting it.
func NewSync(credential, resource, mode string) Sync {
	return Sync{ID: uuid.NewString(), Credential: credential, Resource: resource, Mode: mode}
}

// Check reports what is missing or malformed in s, before anything is
// looked up.
func (s Sync) Check() error {
	switch {
	case s.Credential == "":
		return errors.New("credential is required")
	case s.Resource == "":
		return errors.New("resource is required (a search path like \"Patient\")")
	case s.Mode != "" && s.Mode != SyncFull && s.Mode != SyncIncremental:
		return fmt.Errorf("mode %q is not %q or %q", s.Mode, SyncFull, SyncIncremental)
	}
	return nil
}
