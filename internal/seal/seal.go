// Package seal encrypts secrets at rest with AES-256-GCM under a master key,
// and opens them again.
//
// A sealed value is the text
//
//	v1.<kid>.<base64url(nonce | ciphertext+tag)>
//
// or the same in bytes (binary.go), where kid is the first 8 hex digits of the SHA-256 of the key that sealed
// it. The key id is what makes master-key rotation possible: a Keyring seals
// with its current key and opens with whichever of its keys (current or old)
// the value names, so values sealed under the old key stay readable until
// they are sealed again.
//
// Every value is sealed with associated data (AAD) chosen by the caller, such
// as "<credential id>/<field>": a ciphertext copied to another place does not
// open there. Errors never contain a key, a plaintext or a ciphertext.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length in bytes of every key: AES-256.
const KeySize = 32

// version is the first field of every sealed value.
const version = "v1"

// kidLen is the length of a key id in hex digits.
const kidLen = 8

// Errors returned by Open, each wrapped with what failed; test with errors.Is.
var (
	// ErrMalformed: the text is not a sealed value of a known version.
	ErrMalformed = errors.New("seal: malformed sealed value")
	// ErrUnknownKey: the value was sealed with a key the keyring does not
	// hold (an old master key was dropped too soon, or the wrong key is
	// configured).
	ErrUnknownKey = errors.New("seal: sealed with a key not in the keyring")
	// ErrAuth: the value does not authenticate: it was tampered with, or it
	// is opened with other associated data than it was sealed with.
	ErrAuth = errors.New("seal: authentication failed (tampered data or wrong associated data)")
)

// b64 is the encoding of the payload of a sealed value.
var b64 = base64.RawURLEncoding

// Keyring seals with its current key and opens with any of its keys. It is
// safe for concurrent use.
type Keyring struct {
	current *key
	byID    map[string]*key
	ids     []string // current first, then the old keys in the order given
}

type key struct {
	id    string
	rawID [binaryKidLen]byte // id as bytes, for the binary form
	aead  cipher.AEAD
}

// NewKeyring builds a keyring that seals with current and opens values
// sealed with current or any of old. Every key must be KeySize bytes. A key
// given twice is kept once.
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, fmt.Errorf("seal: current key: %w", err)
	}
	kr := &Keyring{current: cur, byID: map[string]*key{cur.id: cur}, ids: []string{cur.id}}
	for i, raw := range old {
		k, err := newKey(raw)
		if err != nil {
			return nil, fmt.Errorf("seal: old key %d: %w", i+1, err)
		}
		if _, dup := kr.byID[k.id]; dup {
			// Either the same key twice (harmless) or two keys whose ids
			// collide, which cannot be told apart; the first one wins.
			continue
		}
		kr.byID[k.id] = k
		kr.ids = append(kr.ids, k.id)
	}
	return kr, nil
}

func newKey(raw []byte) (*key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if aead.NonceSize() != gcmNonceLen || aead.Overhead() != gcmTagLen {
		return nil, fmt.Errorf("AES-GCM nonce %d and tag %d bytes, want %d and %d", aead.NonceSize(), aead.Overhead(), gcmNonceLen, gcmTagLen)
	}
	k := &key{id: KeyID(raw), aead: aead}
	if _, err := hex.Decode(k.rawID[:], []byte(k.id)); err != nil {
		return nil, err
	}
	return k, nil
}

// KeyID is the id of a key as it appears in sealed values: the first 8 hex
// digits of its SHA-256. It identifies the key without revealing it.
func KeyID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])[:kidLen]
}

// ParseKey decodes a base64 master key (standard or URL alphabet, padded or
// not, surrounding spaces ignored) and checks that it is KeySize bytes. Its
// errors never contain the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("seal: key is empty")
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
	} {
		raw, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(raw) != KeySize {
			return nil, fmt.Errorf("seal: key decodes to %d bytes, want %d (generate one with: openssl rand -base64 32)", len(raw), KeySize)
		}
		return raw, nil
	}
	return nil, fmt.Errorf("seal: key is not valid base64 (%d characters; generate one with: openssl rand -base64 32)", len(s))
}

// KeyIDs are the ids of the keys the keyring holds: the current one first,
// then the old ones. More than one means values may still be sealed under
// an old key.
func (kr *Keyring) KeyIDs() []string { return append([]string(nil), kr.ids...) }

// CurrentKeyID is the id of the key Seal uses.
func (kr *Keyring) CurrentKeyID() string { return kr.current.id }

// Seal encrypts plaintext under the current key, bound to aad, and returns
// the sealed value. Every call draws a fresh random nonce, so sealing the
// same plaintext twice gives different values.
func (kr *Keyring) Seal(plaintext, aad []byte) (string, error) {
	k := kr.current
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: draw nonce: %w", err)
	}
	box := k.aead.Seal(nonce, nonce, plaintext, aad)
	return version + "." + k.id + "." + b64.EncodeToString(box), nil
}

// Open decrypts a value sealed by Seal with the same aad, using the key the
// value names, current or old. Errors wrap ErrMalformed, ErrUnknownKey or
// ErrAuth and never contain the value.
func (kr *Keyring) Open(sealed string, aad []byte) ([]byte, error) {
	kid, payload, err := split(sealed)
	if err != nil {
		return nil, err
	}
	k, ok := kr.byID[kid]
	if !ok {
		// A well-formed key id is a hash prefix of a key, safe to show, and
		// it is what an operator needs to find the missing key.
		return nil, fmt.Errorf("%w: key id %s", ErrUnknownKey, kid)
	}
	box, err := b64.DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	return k.open(box, aad)
}

// open decrypts box (nonce, ciphertext and tag), in either form's bytes.
func (k *key) open(box, aad []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(box) < ns+k.aead.Overhead() {
		return nil, fmt.Errorf("%w: payload too short", ErrMalformed)
	}
	plain, err := k.aead.Open(nil, box[:ns], box[ns:], aad)
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}

// KeyIDOf returns the id of the key a sealed value was sealed with, without
// opening it: a value whose key id is not CurrentKeyID is due to be sealed
// again after a master-key rotation.
func KeyIDOf(sealed string) (string, error) {
	kid, _, err := split(sealed)
	return kid, err
}

// split takes a sealed value apart into its key id and payload.
func split(sealed string) (kid, payload string, err error) {
	ver, rest, ok := strings.Cut(sealed, ".")
	if !ok || ver != version {
		return "", "", fmt.Errorf("%w: not a %s value", ErrMalformed, version)
	}
	kid, payload, ok = strings.Cut(rest, ".")
	if !ok || !isKeyID(kid) {
		return "", "", fmt.Errorf("%w: bad key id", ErrMalformed)
	}
	return kid, payload, nil
}

func isKeyID(s string) bool {
	if len(s) != kidLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
