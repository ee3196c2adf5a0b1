// Package rotation replaces a credential's key at its vendor, as the
// vendors advise (HealthSync: every 90 days): create a new key with the
// same permissions, verify it with a real call, switch the credential to
// it, then revoke the old one.
//
// A rotation is a state machine persisted in Redis by the store (planned,
// creating, created, verified, switched, then done or aborted). Each step is
// recorded before the next vendor call, so a rotation stopped at any point
// (a crash, a timeout, a lost answer) resumes where it stopped, by any
// worker, once the hold of the one that stopped runs out. The holder
// renews its hold (Options.Hold, default 30s) before each vendor call and
// every third of it while one runs: a live holder keeps it however long a
// call takes, a dead one's lapses within the hold, and a holder that finds
// it taken over stops before its next vendor call (ErrHoldLost):
//
//   - never two live new keys for one rotation: the new key's name is
//     recorded before the vendor is asked to create it, and a rotation that
//     resumes without knowing whether the key was created lists the
//     vendor's keys and revokes any key of that name before creating
//     another (a vendor shows a key once: one whose answer was lost cannot
//     be used, only cleaned up);
//   - never the old key revoked before the new one works: the old key is
//     revoked only from the step switched, which follows verified;
//   - never a key orphaned at the vendor: a rotation given up (the new key
//     fails verification, the credential is revoked meanwhile) revokes its
//     new key before it ends.
//
// The switch is atomic with its key.rotated event (old and new key
// fingerprints, never the keys), and, where the key is itself the bearer
// token (HealthSync API keys), with the token.renewed event of the new
// generation, so that nobody is handed the old key once it is revoked. The
// end is atomic with the old key's key.revoked event (reason rotated) and
// the scheduling of the next rotation.
//
// Rotator drives one rotation (the key:rotate job of package jobs calls
// it); Scheduler finds the rotations that are due from each vendor's
// rotate_every and hands them to the queue, and resumes at once a rotation
// whose job still shows running while its hold has lapsed (its worker
// died: the queue itself would bring that job back only after one to two
// minutes). A job that asks for a rotation begins at most one (see
// store.RotationRequest): the dead worker's job, when it comes back, finds
// its rotation finished and does not rotate again. RevokeAtVendor revokes
// a credential's key at its vendor for an operator.
package rotation
