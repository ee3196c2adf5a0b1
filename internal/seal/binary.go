package seal

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
)

// The binary form of a sealed value, for values kept by the million (queued
// requests) where the text form's base64 and separators cost a third more:
//
//	0x01 | key id (4 bytes) | nonce | ciphertext+tag
//
// The key id is the same as in the text form (its 8 hex digits as 4 bytes),
// so a value due to be sealed again after a master-key rotation is found
// without opening it (KeyIDOfBinary). The same key, nonce and associated
// data give the same ciphertext in either form: they differ only in
// encoding, and neither opens with other associated data than it was
// sealed with.

// BinaryVersion is the first byte of every value in the binary form (no
// value in the text form, "v1.…", starts with it).
const BinaryVersion = 0x01

// binaryKidLen is the length of the key id in the binary form.
const binaryKidLen = kidLen / 2

// gcmNonceLen and gcmTagLen are AES-GCM's standard nonce and tag lengths
// (cipher.NewGCM).
const gcmNonceLen, gcmTagLen = 12, 16

// BinaryHeaderLen is the room SealInPlace needs in front of a plaintext:
// the version byte, the key id and the nonce. BinaryTagLen is what it adds
// after it.
const (
	BinaryHeaderLen = 1 + binaryKidLen + gcmNonceLen
	BinaryTagLen    = gcmTagLen
)

// SealInPlace seals buf[BinaryHeaderLen:] as AppendSeal does, bound to aad,
// writing the value in the binary form over buf (its first BinaryHeaderLen
// bytes are room for the header, their content is ignored): a value kept
// as it is built needs no second buffer. The result shares buf's array
// when its capacity has BinaryTagLen bytes to spare.
func (kr *Keyring) SealInPlace(buf, aad []byte) ([]byte, error) {
	if len(buf) < BinaryHeaderLen {
		return nil, fmt.Errorf("seal: %d bytes, fewer than the %d of room for the header", len(buf), BinaryHeaderLen)
	}
	if cap(buf)-len(buf) < BinaryTagLen {
		buf = slices.Grow(buf, BinaryTagLen)
	}
	k := kr.current
	buf[0] = BinaryVersion
	copy(buf[1:], k.rawID[:])
	nonce := buf[1+binaryKidLen : BinaryHeaderLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: draw nonce: %w", err)
	}
	plaintext := buf[BinaryHeaderLen:]
	// The ciphertext takes the plaintext's place (an exact overlap, as
	// cipher.AEAD allows), the tag the room after it.
	sealed := k.aead.Seal(plaintext[:0], nonce, plaintext, aad)
	return buf[:BinaryHeaderLen+len(sealed)], nil
}

// AppendSeal encrypts plaintext as Seal does, bound to aad, and appends the
// value in the binary form to dst.
func (kr *Keyring) AppendSeal(dst, plaintext, aad []byte) ([]byte, error) {
	k := kr.current
	ns := k.aead.NonceSize()
	dst = append(dst, BinaryVersion)
	dst = append(dst, k.rawID[:]...)
	start := len(dst)
	dst = append(dst, make([]byte, ns)...)
	nonce := dst[start:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: draw nonce: %w", err)
	}
	return k.aead.Seal(dst, nonce, plaintext, aad), nil
}

// OpenBinary decrypts a value in the binary form (AppendSeal) with the same
// aad, using the key it names, current or old. Errors wrap ErrMalformed,
// ErrUnknownKey or ErrAuth and never contain the value.
func (kr *Keyring) OpenBinary(sealed, aad []byte) ([]byte, error) {
	kid, err := KeyIDOfBinary(sealed)
	if err != nil {
		return nil, err
	}
	k, ok := kr.byID[kid]
	if !ok {
		return nil, fmt.Errorf("%w: key id %s", ErrUnknownKey, kid)
	}
	return k.open(sealed[1+binaryKidLen:], aad)
}

// KeyIDOfBinary returns the id of the key a value in the binary form was
// sealed with, without opening it.
func KeyIDOfBinary(sealed []byte) (string, error) {
	if len(sealed) < 1+binaryKidLen || sealed[0] != BinaryVersion {
		return "", fmt.Errorf("%w: not a binary sealed value", ErrMalformed)
	}
	return hex.EncodeToString(sealed[1 : 1+binaryKidLen]), nil
}
