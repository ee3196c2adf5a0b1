package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Every sealed field is bound (through the AEAD's associated data) to the
// credential id, the credential's vendor and the field's name, so that a
// ciphertext copied to another credential, another vendor or another field
// does not open there: someone who can write to Redis cannot make one
// credential's secret be sent to another vendor's token endpoint, nor a
// refresh token be used as a client secret.
//
// Values written before this binding (format 1: "<id>/<field>", without the
// vendor) still open: open tries the full binding first and falls back to
// the legacy one, and the re-seal (Reseal) rewrites them with the full
// binding. The legacy binding is only ever accepted, never written.

// aad is the associated data of a sealed field: the credential id, its
// vendor and the field (seal.Bind, which no legacy binding can equal: those
// hold one "/", a seal.Bind text at least two).
func aad(id, vendor, field string) []byte { return seal.Bind("cred", id, vendor, field) }

// legacyAAD is the binding of values sealed before the vendor was bound:
// "<id>/<field>". Read only.
func legacyAAD(id, field string) []byte { return []byte(id + "/" + field) }

// seal seals one secret field of a credential, bound to its id, vendor and
// field name. A zero secret seals to "" (field absent).
func (s *Store) seal(id, vendor, field string, v secret.Value) (string, error) {
	if v.IsZero() {
		return "", nil
	}
	sealed, err := s.ring.Seal([]byte(v.Reveal()), aad(id, vendor, field))
	if err != nil {
		return "", fmt.Errorf("seal %s: %w", field, err)
	}
	return sealed, nil
}

// openField opens one sealed field with the full binding, or failing that
// with the legacy one; legacy says which one it took. The error names the
// field and, for a key the keyring lacks, its key id (never the key nor the
// value).
func (s *Store) openField(id, vendor, field, sealed string) (plain []byte, legacy bool, err error) {
	plain, err = s.ring.Open(sealed, aad(id, vendor, field))
	if err == nil {
		return plain, false, nil
	}
	if !errors.Is(err, seal.ErrAuth) {
		return nil, false, fmt.Errorf("open %s: %w", field, err)
	}
	if plain, lerr := s.ring.Open(sealed, legacyAAD(id, field)); lerr == nil {
		return plain, true, nil
	}
	return nil, false, fmt.Errorf("open %s: %w", field, err)
}

// vendorsOf reads the vendor of each credential in ids in one round trip
// ("" for one that is gone), for writes that seal a field without having
// been told the vendor. The scripts that write check it again.
func (s *Store) vendorsOf(ctx context.Context, ids []string) ([]string, error) {
	cmds := make([]*redis.StringCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, s.credKey(id), fVendor)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read vendor: %w", err)
	}
	out := make([]string, len(ids))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}
