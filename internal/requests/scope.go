package requests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// Everything kept about a request belongs to its (vendor, credential):
//
//   - an idempotency key is scoped: the Redis key is a hash of the vendor,
//     the credential and the key, so the same key under another credential
//     is another key, and never answers with the first one's outcome;
//   - a batch is scoped: its record and queue are named by the hash of the
//     vendor and credential with the batch id, so a batch "nightly" of one
//     clinic and a batch "nightly" of another are two batches, and status
//     and cancel name the credential they act for;
//   - a request id is unique: an id already taken (by any credential) is
//     refused, never replaced and never answered with the other's state;
//   - an answer body too large for its event is stored under the vendor
//     and credential (objectName).
//
// What is kept of a request that may hold patient data is sealed with the
// master key (package seal), bound to the request: the queued request and
// its task payload (jobs.SealedRequest), the outcome under an idempotency
// key, and the outcome event in the outbox (events.SealOutboxEntry).

// scope names a (vendor, credential) in Redis keys: 24 hex digits of the
// SHA-256 of both, which cannot be confused across pairs and keeps keys
// short whatever the ids hold.
func scope(vendor, credential string) string {
	sum := sha256.Sum256([]byte(vendor + "\x00" + credential))
	return hex.EncodeToString(sum[:12])
}

// scopedBatch is the name of a credential's batch in Redis keys (never
// starting with ':', unlike noBatch).
func scopedBatch(vendor, credential, batch string) string {
	return scope(vendor, credential) + "." + batch
}

// objectName is where an answer body too large for its event is stored.
func objectName(r jobs.Request) string { return r.Vendor + "/" + r.Credential + "/" + r.ID }

// requestAAD binds a sealed request to its id, vendor, credential and batch.
func requestAAD(id, vendor, credential, batch string) []byte {
	return seal.Bind("request", vendor, credential, id, batch)
}

// idemAAD binds a sealed outcome to its idempotency key's scope.
func idemAAD(vendor, credential, key string) []byte {
	return seal.Bind("idempotency", vendor, credential, key)
}

// sealRequest returns the queued form of r (jobs.SealedRequest as JSON),
// carrying its submission's trace context tc.
func sealRequest(kr *seal.Keyring, r jobs.Request, tc tracing.Carrier) (string, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode request %s: %w", r.ID, err)
	}
	sealed, err := kr.Seal(raw, requestAAD(r.ID, r.Vendor, r.Credential, r.Batch))
	if err != nil {
		return "", fmt.Errorf("seal request %s: %w", r.ID, err)
	}
	out, err := json.Marshal(jobs.SealedRequest{ID: r.ID, Vendor: r.Vendor, Credential: r.Credential, Batch: r.Batch, Sealed: sealed, Trace: tc})
	if err != nil {
		return "", fmt.Errorf("encode request %s: %w", r.ID, err)
	}
	return string(out), nil
}

// openRequest reads a queued request or task payload: a jobs.SealedRequest,
// opened with kr, or (queued before requests were sealed) a plain
// jobs.Request; and its submission's trace context. Errors never quote the
// payload.
func openRequest(kr *seal.Keyring, payload []byte) (jobs.Request, tracing.Carrier, error) {
	var sr jobs.SealedRequest
	if err := json.Unmarshal(payload, &sr); err != nil {
		return jobs.Request{}, tracing.Carrier{}, fmt.Errorf("requests: request payload is not JSON: %w", err)
	}
	var r jobs.Request
	if sr.Sealed == "" {
		if err := json.Unmarshal(payload, &r); err != nil {
			return r, tracing.Carrier{}, fmt.Errorf("requests: request payload: %w", err)
		}
		return r, sr.Trace, nil
	}
	if kr == nil {
		return r, tracing.Carrier{}, errors.New("requests: request payload is sealed and no keyring is configured")
	}
	raw, err := kr.Open(sr.Sealed, requestAAD(sr.ID, sr.Vendor, sr.Credential, sr.Batch))
	if err != nil {
		return r, tracing.Carrier{}, fmt.Errorf("requests: open request %s: %w", sr.ID, err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, tracing.Carrier{}, fmt.Errorf("requests: sealed request %s: %w", sr.ID, err)
	}
	if r.ID != sr.ID || r.Vendor != sr.Vendor || r.Credential != sr.Credential || r.Batch != sr.Batch {
		return r, tracing.Carrier{}, fmt.Errorf("requests: sealed request %s does not match its payload", sr.ID)
	}
	return r, sr.Trace, nil
}

// BatchKey is the Redis key of the record of the batch id of a credential,
// under the store's key prefix ("" means "tokenrelay:"): for operators'
// tools and tests.
func BatchKey(storePrefix, vendor, credential, id string) string {
	return newKeys(storePrefix).batch(vendor, credential, id)
}
