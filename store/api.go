package store

// The methods below are the store's API; the implementation is in redis.go.
//
//	func New(rdb redis.UniversalClient, opts Options) (*Store, error)
//	func (s *Store) Upsert(ctx, NewCredential) (UpsertResult, error)
//	func (s *Store) Get(ctx, id) (Credential, error)
//	func (s *Store) CurrentToken(ctx, id) (Credential, error)   // no client secret decrypted
//	func (s *Store) Scan(ctx, fn func(Summary) error) error
//	func (s *Store) ClaimDue(ctx, now, limit, lease) ([]Due, error)
//	func (s *Store) Claim(ctx, id, gen, owner, lease) (Credential, error)
//	func (s *Store) CommitRenewal(ctx, id, owner, gen, Renewal, events.Envelope) error
//	func (s *Store) CommitFailure(ctx, id, owner, gen, Failure, ...events.Envelope) error
//	func (s *Store) Release(ctx, id, owner, retryAt) error
//	func (s *Store) Reconcile(ctx, now) (int, error)
