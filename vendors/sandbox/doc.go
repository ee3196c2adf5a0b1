// Package sandbox emulates the vendors tokenrelay talks to, quirks
// included, for the dev mode (make run), the tests and the benchmarks. It is
// one http.Handler (Sandbox.Handler) that tests mount on an
// httptest.Server, or a server of its own (Sandbox.Serve, cmd/sandbox).
//
// # Vendors
//
// Halaxy, under HalaxyPath (/halaxy/main/), so a Halaxy base URL is
// server URL + HalaxyPath:
//
//   - POST oauth/token: a JSON body {"grant_type":"client_credentials",
//     "client_id","client_secret"}. It requires Accept: application/fhir+json
//     (else 406), a User-Agent "NAME (EMAIL)" (else 400 invalid_request), a
//     JSON Content-Type (else 415). An unknown or deleted client or a wrong
//     secret gets 401 {"error":"invalid_client"}. Success answers
//     {"token_type":"Bearer","expires_in":<ClaimedExpiresIn>,"access_token"},
//     claiming 3600 s by default while the token really dies after
//     RealTokenLifetime (15 minutes), as the real Halaxy does.
//   - GET {type} (Patient, Appointment, any resource type): a FHIR R4B
//     searchset Bundle of SetFHIRResources resources (default 3; Patient's
//     are a few fake patients), with its total, paged by _count (1 to 100,
//     default 20) with a next link (a keyset cursor, so changes while a
//     client pages skip nothing) while more remain, filtered by
//     _lastUpdated=gt<instant>; each resource has meta.versionId and
//     meta.lastUpdated, and UpdateFHIRResources changes resources (a new
//     version at the sandbox clock's time) while a client pages; GET
//     {type}/{id} (ids from 1001) one resource or 404. Answers are application/fhir+json. Reads
//     require the same Accept and User-Agent and a valid bearer token: an
//     expired, unknown, missing or revoked token gets 401 and is counted
//     (Sandbox.ExpiredUses, UnknownUses, RevokedUses). Answers carry
//     x-ratelimit-limit and x-ratelimit-remaining (no reset header); past
//     the limit of one OAuth client (HalaxyRateLimit, or the true one told
//     by SetHalaxyRateLimit) in a sliding HalaxyRateWindow, 429 with
//     retry-after in seconds. Every decision of the window is recorded per
//     client (RateRecord), and Throttle makes a client's reads answer 429
//     with a long retry-after.
//
// Generic OAuth 2.0 client credentials, under OAuth2Path (/oauth2/):
//
//   - POST token: form-encoded grant_type=client_credentials, the client
//     authenticated by HTTP Basic (RFC 6749 section 2.3.1, form-urlencoded
//     id and secret) or by client_id and client_secret in the body, not both.
//     Same client registry as Halaxy. Success answers {"access_token",
//     "token_type":"Bearer","expires_in":<RealTokenLifetime>} (this server
//     says the truth), with the scope echoed when one was asked for.
//   - GET Patient: as Halaxy's, without the header requirements and the
//     rate limit.
//
// A token is valid only on the API that issued it and only while its client
// exists: deleting a client (DeleteClient) revokes its tokens at once, as a
// patient deleting their portal key does.
//
// # Control
//
// Tests call the Go methods (AddClient, DeleteClient, Inject, TokenCalls,
// ...). Other processes use JSON over HTTP under ControlPath (/_sandbox/);
// durations are Go duration strings ("15m", "7s"):
//
//	GET    /_sandbox/clients                 ["id", ...]
//	POST   /_sandbox/clients                 {"client_id","client_secret"}            204
//	DELETE /_sandbox/clients/{id}                                                     204
//	GET    /_sandbox/clients/{id}/stats      {"token_calls","token_call_times","expired_uses","issued_tokens"}
//	GET    /_sandbox/settings                {"real_token_lifetime","claimed_expires_in"}
//	PUT    /_sandbox/settings                the same, fields optional                204
//	GET    /_sandbox/faults                  [fault, ...] (those still active)
//	POST   /_sandbox/faults                  fault                                    204
//	DELETE /_sandbox/faults                  clear every fault                        204
//	GET    /_sandbox/stats                   {"total_token_calls","expired_uses","unknown_uses","revoked_uses",
//	                                          "remembered_tokens","clients":{id:{"token_calls","expired_uses","issued_tokens"}}}
//	POST   /_sandbox/reset                   reset the counters                       204
//	GET    /_sandbox/rate/{account}/record   [{"at","accepted"}, ...] (RateRecord)
//	DELETE /_sandbox/rate/records            empty every rate record                  204
//	PUT    /_sandbox/rate/{account}/limit    {"limit"} Halaxy client's true limit      204 (0: default, negative: none)
//	PUT    /_sandbox/rate/{account}/throttle {"retry_after":"20m"} 429 until then      204 ("" or "0s": end)
//
// A fault is {"client_id","endpoint":"token"|"patient"|"all","kind":
// "latency"|"server_error"|"malformed"|"reset"|"rate_limited","latency",
// "status","retry_after","times"}; see Fault. For example:
//
//	curl -X POST localhost:8090/_sandbox/faults -d '{"kind":"rate_limited","retry_after":"7s","times":1}'
//
// The control endpoints have no authentication: listen on loopback only.
//
// # Secrets
//
// The sandbox logs token fingerprints, never a token or a client secret, so
// that tests can grep every log line of a run for the tokens it issued
// (IssuedTokens) without the sandbox's own lines getting in the way.
package sandbox
