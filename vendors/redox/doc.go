// Package redox is the adapter of Redox OAuth API keys (vendor kind
// "redox"): OAuth 2.0 client credentials where the client authenticates
// with a signed JWT client assertion (RFC 7523 section 2.2, as the SMART
// Backend Services guide profiles it), form-encoded to
// POST {base}v2/auth/token.
//
// # The assertion
//
// Each Token call signs a new assertion from the credential:
//
//   - With vendors.Credential.PrivateKey (PEM: PKCS#8, PKCS#1 RSA or SEC1
//     EC), RS384 for an RSA key of 2048 bits or more, ES384 for an EC P-384
//     key. KeyID is required: Redox finds the public key by the kid header.
//   - Else with vendors.Credential.ClientSecret, HS384 (Redox's "HS384 works
//     much like legacy auth": the secret signs the request and is never
//     sent). KeyID is optional. The secret must be at least 48 bytes, the
//     size of the hash (RFC 7518 section 3.2).
//
// Header: alg, typ "JWT", kid. Claims: iss = sub = the client id, aud = the
// token URL, a random jti, iat = now and exp = iat + Options.AssertionLifetime
// (at most 5 minutes, SMART's limit). Redox refuses an iat older than 5
// minutes (10 s of skew allowed), so a host whose clock is off by more than
// that cannot get tokens: the refusal reads like a revoked credential
// (invalid_client), and its error quotes the vendor's reason.
//
// A credential that cannot sign (no key and no secret, a PEM that does not
// parse, an unsupported key type or size, a private key without key id) is
// reported before anything is sent, as a *vendors.Error of class
// vendors.ClassRejected, Op "sign client assertion", Status 0, wrapping
// ErrBadCredential: it is the credential's configuration that is wrong, not
// the vendor that refused it, so it is not ErrRevoked; and retrying cannot
// help until the credential is edited.
//
// # The answer
//
// {"access_token","token_type","expires_in","scope"}; Redox access tokens
// live 5 minutes ("expires_in": 300). There is no refresh token: a new
// assertion gets a new token.
//
// # Rotating the signing key
//
// Redox verifies assertions with the public keys of the API key, pasted in
// its dashboard or read from a JWKS URL the service publishes (PublicJWK and
// JWKS build that document). Rotating a key loses no token request when done
// in three steps:
//
//  1. Publish: add the new public key, under a new kid, to the JWKS (or
//     paste it) next to the old one. Wait until Redox sees it (a JWKS URL
//     may be cached by Redox for a while).
//  2. Switch: change the credential's private_key and key_id to the new
//     pair. Assertions signed from then on use the new kid; the old key
//     still verifies the ones already in flight.
//  3. Drop: remove the old key from the JWKS once nothing signed with it
//     can still be presented or relied on: wait at least the assertion
//     lifetime (5 minutes) plus the access-token lifetime (5 minutes) after
//     the switch reached every worker, so that a last assertion signed with
//     the old key is no longer acceptable and the tokens it got have
//     expired.
//
// Dropping the old key first, or switching before the new key is published,
// makes token requests fail with invalid_client, which tokenrelay treats as
// a revoked credential.
package redox
