package store

// The store's Redis keys, every one named here from the prefix (the
// outbox's name belongs to events). Two scripts, claim_due.lua and
// reconcile.lua, also name credential hashes themselves, as
// prefix .. "cred:" .. id: credKeyInfix is that part of the contract, and
// a test runs both scripts against credKey's names.

// credKeyInfix comes between the prefix and a credential's id in the name
// of its hash.
const credKeyInfix = "cred:"

// credsKey is the set of every credential id.
func credsKey(prefix string) string { return prefix + "creds" }

// dueKey is the sorted set of credential ids by next refresh (ms).
func dueKey(prefix string) string { return prefix + "due" }

// credKey is the hash of one credential.
func (s *Store) credKey(id string) string { return s.prefix + credKeyInfix + id }

// CredentialKey is the Redis hash of credential id, for another package's
// script that checks a credential in the same step as its own work
// (requests' submit.lua): it may read the "vendor" and "state" fields (a
// credential exists while state is set), and nothing else.
func (s *Store) CredentialKey(id string) string { return s.credKey(id) }

// rotKey is the hash of one credential's key rotation.
func (s *Store) rotKey(id string) string { return s.prefix + "rot:" + id }

// rotateDueKey is the sorted set of credential ids by rotation due time.
func (s *Store) rotateDueKey() string { return s.prefix + "rotate_due" }

// resealLeaseKey is the lease that lets one process at a time re-seal;
// resealDoneKey records the key id of the last pass that left nothing.
func (s *Store) resealLeaseKey() string { return s.prefix + "reseal:lease" }
func (s *Store) resealDoneKey() string  { return s.prefix + "reseal:done" }

// reconcileTurnKey is set, expiring, by the scheduler replica whose turn it
// is to reconcile.
func (s *Store) reconcileTurnKey() string { return s.prefix + "reconcile:turn" }
