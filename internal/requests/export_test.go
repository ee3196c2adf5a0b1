package requests

import (
	"context"
	"encoding/json"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// EntryID is the id of a queued request's entry (any form), for tests that
// move entries as the scripts do.
func EntryID(item string) (string, error) {
	e, err := readEntry([]byte(item))
	return e.ID, err
}

// LegacyEntry is r queued as the JSON form was written before the binary
// form (spelled out here, as it was, not with today's code): a
// jobs.SealedRequest whose sealed text is r's JSON.
func LegacyEntry(kr *seal.Keyring, r jobs.Request) ([]byte, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sealed, err := kr.Seal(raw, seal.Bind("request", r.Vendor, r.Credential, r.ID, r.Batch))
	if err != nil {
		return nil, err
	}
	return json.Marshal(jobs.SealedRequest{ID: r.ID, Vendor: r.Vendor, Credential: r.Credential, Batch: r.Batch, Sealed: sealed})
}

// Recover runs the feeder's recovery of released requests it may not have
// enqueued (what a feeder does as it becomes the active one).
func (f *Feeder) Recover(ctx context.Context) error { return f.recover(ctx) }

// Unqueue is the first step of ending the queued requests of a cancelled
// batch alone (their ids leave the queued set for hashes of their own), as
// a feeder that stops before ending them leaves it.
func (f *Feeder) Unqueue(ctx context.Context, rs []jobs.Request) error { return f.unqueue(ctx, rs) }
