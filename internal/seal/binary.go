package seal

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
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

// binaryVersion is the first byte of every value in the binary form.
const binaryVersion = 0x01

// binaryKidLen is the length of the key id in the binary form.
const binaryKidLen = kidLen / 2

// AppendSeal encrypts plaintext as Seal does, bound to aad, and appends the
// value in the binary form to dst.
func (kr *Keyring) AppendSeal(dst, plaintext, aad []byte) ([]byte, error) {
	k := kr.current
	ns := k.aead.NonceSize()
	dst = append(dst, binaryVersion)
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
	if len(sealed) < 1+binaryKidLen || sealed[0] != binaryVersion {
		return "", fmt.Errorf("%w: not a binary sealed value", ErrMalformed)
	}
	return hex.EncodeToString(sealed[1 : 1+binaryKidLen]), nil
}
