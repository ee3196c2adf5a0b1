package client

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error codes of a TokenReply. A code, once shipped, is never renamed.
const (
	// CodeNotFound: the relay knows no such credential for that vendor.
	CodeNotFound = "not_found"
	// CodeRevoked: the vendor refused the credential for good; an operator
	// must reconnect it.
	CodeRevoked = "revoked"
	// CodeExpired: the current token has expired and no renewal has
	// succeeded yet; the relay keeps retrying.
	CodeExpired = "expired"
	// CodeUnavailable: there is no token to hand out right now (none issued
	// yet, or the relay's store could not be read); try again later.
	CodeUnavailable = "unavailable"
)

// Errors returned (wrapped, with the relay's message) by TokenSource.Token.
var (
	// ErrNotFound: the relay knows no such credential for that vendor.
	ErrNotFound = errors.New("tokenrelay: credential not found")
	// ErrRevoked: the credential was revoked; no token will come until an
	// operator reconnects it.
	ErrRevoked = errors.New("tokenrelay: credential revoked")
	// ErrExpired: the credential's token has expired and the relay has not
	// renewed it yet (also when a token reached this process already
	// expired, e.g. through clock skew).
	ErrExpired = errors.New("tokenrelay: token expired")
	// ErrUnavailable: no token can be had right now: none issued yet, the
	// relay could not read its store, no relay answered in time, or the
	// reply was unreadable. Retrying later may succeed.
	ErrUnavailable = errors.New("tokenrelay: token unavailable")
	// ErrClosed: the TokenSource was closed.
	ErrClosed = errors.New("tokenrelay: token source closed")
)

// TokenReply is the JSON reply to a token request: either a token
// (AccessToken, TokenType, ExpiresAt, Generation) or an error (Error, one of
// the Code constants, and a human-readable Message).
type TokenReply struct {
	AccessToken string    `json:"access_token,omitempty"`
	TokenType   string    `json:"token_type,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	// Generation counts the credential's renewals; a token.renewed event
	// with a higher one announces a newer token.
	Generation int64  `json:"generation,omitempty"`
	Error      string `json:"error,omitempty"`
	Message    string `json:"message,omitempty"`
}

// Err returns nil for a token reply, else the sentinel error of its code
// (ErrNotFound, ...) wrapped with its message. An unknown code is reported
// as ErrUnavailable.
func (r TokenReply) Err() error {
	if r.Error == "" {
		if r.AccessToken == "" {
			return fmt.Errorf("%w: reply carries neither a token nor an error", ErrUnavailable)
		}
		return nil
	}
	var sentinel error
	switch r.Error {
	case CodeNotFound:
		sentinel = ErrNotFound
	case CodeRevoked:
		sentinel = ErrRevoked
	case CodeExpired:
		sentinel = ErrExpired
	case CodeUnavailable:
		sentinel = ErrUnavailable
	default:
		return fmt.Errorf("%w: unknown error code %q: %s", ErrUnavailable, r.Error, r.Message)
	}
	if r.Message == "" {
		return sentinel
	}
	return fmt.Errorf("%w: %s", sentinel, r.Message)
}

// TokenSubject is the subject a token for a credential is requested on:
// prefix + "token.get.<vendor>.<credential>".
func TokenSubject(prefix, vendor, credential string) string {
	return prefix + "token.get." + vendor + "." + credential
}

// RenewedSubject is the subject the relay announces a credential's renewals
// on: prefix + "token.renewed.<vendor>.<credential>" (the subject of
// events.TypeTokenRenewed under the prefix).
func RenewedSubject(prefix, vendor, credential string) string {
	return prefix + "token.renewed." + vendor + "." + credential
}

// checkToken reports why s cannot be one token of a NATS subject.
func checkToken(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if strings.ContainsAny(s, ".*> \t\r\n") {
		return fmt.Errorf("%s %q contains a dot, a wildcard or white space", what, s)
	}
	return nil
}

// CheckSubjectPrefix reports why prefix cannot start a subject: it may be
// empty, and otherwise must hold no wildcard, white space or empty token.
func CheckSubjectPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.ContainsAny(prefix, "*> \t\r\n") {
		return fmt.Errorf("subject prefix %q contains a wildcard or white space", prefix)
	}
	if strings.HasPrefix(prefix, ".") || strings.Contains(prefix, "..") {
		return fmt.Errorf("subject prefix %q has an empty token", prefix)
	}
	return nil
}
