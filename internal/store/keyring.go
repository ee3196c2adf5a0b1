package store

import "github.com/tokenrelay/tokenrelay/internal/seal"

// Keyring is the keyring the store seals with (Options.Keyring), for the
// other parts of a process that seal what they keep in Redis: queued
// requests, their outcomes, sealed outbox entries.
func (s *Store) Keyring() *seal.Keyring { return s.ring }
