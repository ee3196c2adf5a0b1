// Package healthsync is the adapter of the HealthSync API (vendor kind
// "healthsync"): its three ways in, the key management that rotating API
// keys needs, and its rate-limit headers.
//
// # Ways in (Options.Mode)
//
//   - ModeAPIKey (the default): a static bearer API key, nothing to refresh.
//     Token returns the key itself after checking it with one real read
//     (KeyPaths.Verify, default "records?limit=1", the read HealthSync's
//     pages show), so that a revoked key is noticed: a 401 is a definitive
//     refusal (vendors.ErrRevoked). The token's ClaimedLifetime is
//     APIKeyVerifyPeriod (24h): the pipeline checks the key again at 2/3 of
//     it, or sooner with a lower max_token_lifetime. Each check is one
//     request of the account's hourly plan.
//   - ModeOAuth: a user's delegation to a third-party app, renewed with the
//     refresh_token grant (cred.RefreshToken, cred.ClientID and
//     cred.ClientSecret; a public client has no secret). Refresh tokens may
//     rotate: Token returns the new one, or a zero one when none came (the
//     store then keeps the one it has). invalid_grant means the delegation
//     is gone (consent withdrawn, token reused or expired): a definitive
//     refusal.
//   - ModeServiceAccount: server-to-server tokens from the
//     client_credentials grant, with the service account's cred.ClientID
//     and cred.ClientSecret.
//
// HealthSync documents neither its token endpoint nor its form. The adapter
// uses the sandbox's definition, which is plain RFC 6749: POST
// {base}oauth/token (Options.TokenURL to change it), form-encoded, the
// client authenticated by HTTP Basic (the method RFC 6749 section 2.3.1
// makes every server support). expires_in is required: without it the
// pipeline would renew in a loop.
//
// # Key management
//
// HealthSync advises rotating API keys every 90 days: create a key with the
// same permissions, switch the applications to it, test, revoke the old one.
// The rotation job (in jobs) drives that with CurrentKey, CreateKey,
// VerifyKey, ListKeys and RevokeKey. HealthSync's key-management endpoints
// are not public: their paths (KeyPaths) default to the sandbox's, and every
// call is authenticated with an API key of the account (the current one;
// revoke the old key with the new one). Each is one HTTP request, never
// retried, and counts against the account's hourly plan. (Go's HTTP client
// itself may send a GET, the verification read, ListKeys or CurrentKey,
// once more on a fresh connection when a kept-alive one died before any
// answer; a read is harmless to repeat. It never repeats a POST, a token
// request or CreateKey, or a DELETE that reached the server.)
//
// # Errors
//
// Failures are *vendors.Error: ClassRevoked (wrapping vendors.ErrRevoked)
// for a 401 (the key or client is refused), invalid_client and
// unauthorized_client, and invalid_grant of a refresh; ClassRateLimited for
// 429, with the wait from Retry-After or else X-RateLimit-Reset;
// ClassServer for 5xx; ClassMalformed for a 2xx the adapter cannot use;
// ClassNetwork and ClassTimeout when no answer came; ClassRejected for
// anything else, 403 (a missing scope) included. Their messages quote at
// most a sanitised excerpt of an error answer, never a key, secret or token.
//
// # Rate limits
//
// HealthSync limits requests per hour by plan (Plus 100, Premium 1,000,
// Enterprise custom) and says where an account stands in X-RateLimit-Limit,
// X-RateLimit-Remaining and X-RateLimit-Reset (unix seconds); ParseRateLimit
// reads them.
package healthsync
