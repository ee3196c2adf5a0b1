package events

import (
	"encoding/json"
	"time"
)

// Sync event types (package syncs), on "<type>.<vendor>.<credential>". The
// stream captures these three, never "sync.start" (a request/reply subject).
const (
	TypeSyncPage      = "sync.page"
	TypeSyncCompleted = "sync.completed"
	TypeSyncFailed    = "sync.failed"
)

// SyncPage is the data of a sync.page event: one page of a sync's search,
// its resources inline (a JSON array: a FHIR Bundle's entry resources, or a
// non-FHIR answer's items) or, above the inline limit, in the object store.
// Overlap duplicates of an incremental sync carry the resource's own
// meta.versionId and meta.lastUpdated, so consumers can drop them.
type SyncPage struct {
	SyncID    string          `json:"sync_id"`
	Page      int             `json:"page"`
	Resources json.RawMessage `json:"resources,omitempty"`
	BodyRef   *ObjectRef      `json:"body_ref,omitempty"`
}

// SyncCompleted is the data of a sync.completed event: the sync reached
// the search's last page.
type SyncCompleted struct {
	SyncID    string `json:"sync_id"`
	Pages     int    `json:"pages"`
	Resources int    `json:"resources"`
	// Mark is the high-water mark the sync leaves for the next incremental
	// run of its search: the vendor's clock when the first page was
	// served. Zero when the vendor gave no time.
	Mark time.Time `json:"mark,omitzero"`
}

// SyncFailed is the data of a sync.failed event: the sync stopped before
// the search's end. Class is why: cancelled, page_cap, next_link_refused,
// bad_page, or a request's failure class (rejected, unauthorized,
// credential, ...).
type SyncFailed struct {
	SyncID  string     `json:"sync_id"`
	Class   string     `json:"error_class"`
	Message string     `json:"message"`
	Cursor  SyncCursor `json:"cursor"`
}

// SyncCursor is where a sync is: the page to fetch next (an absolute URL on
// the vendor's base URL), how many pages and resources it has delivered.
type SyncCursor struct {
	Next      string `json:"next,omitempty"`
	Page      int    `json:"page"`
	Resources int    `json:"resources"`
}
