// Package client is what a Go service imports to use tokenrelay's tokens:
// a TokenSource that satisfies golang.org/x/oauth2.TokenSource, fetches a
// credential's current token from the relay over NATS request/reply, caches
// it while it is fresh, and follows the relay's token.renewed events so that
// a renewal is picked up at once. It never calls a vendor's token endpoint:
// the relay alone does, so a service can never spend a rotating refresh
// token or a vendor's token budget by mistake.
//
// The package also holds the wire contract of token retrieval (TokenReply,
// TokenSubject, RenewedSubject, the error codes), which the relay's
// responder (package tokenservice) answers with. It imports nothing of
// tokenrelay's, so a service pulls in only nats.go and oauth2.
//
// # Usage
//
//	nc, err := nats.Connect(natsURL)
//	if err != nil { ... }
//	ts, err := client.NewTokenSource(nc, "halaxy-au", "clinic-42")
//	if err != nil { ... }
//	defer ts.Close()
//
//	httpClient := &http.Client{Transport: &oauth2.Transport{Source: ts}}
//	resp, err := httpClient.Get("https://au-api.halaxy.com/main/Patient")
//
// Every call of ts.Token is cheap while the cached token is fresh (a mutex
// and a copy), so ts can be used as the Source of an oauth2.Transport
// directly. oauth2.NewClient(ctx, ts) works too, but it wraps ts in an
// oauth2.ReuseTokenSource, which keeps using a token until ten seconds
// before its expiry: a renewal is then picked up only at that point, not
// when its event arrives (the old token is still valid until then, so this
// is safe, merely later).
//
// # Subjects
//
// A token is requested on prefix + "token.get.<vendor>.<credential>" and
// renewals are announced on prefix + "token.renewed.<vendor>.<credential>",
// where prefix (WithSubjectPrefix, default "") keeps tenants and tests that
// share a NATS server apart. The prefix is prepended as is, so it usually
// ends with a dot ("tenant-a.").
//
// # Tracing
//
// TokenContext sends ctx's W3C trace context with the request, so the
// relay's token.get span is the caller's child. A token comes back naming
// the relay's renewal that produced it, when the relay traced (sampled)
// it: RenewalLink(tok) is a trace.Link for the span of the work that uses
// the token.
//
// # Errors
//
// Token wraps ErrNotFound, ErrRevoked, ErrExpired or ErrUnavailable with the
// relay's message; test for them with errors.Is. An expired token is never
// returned.
package client
