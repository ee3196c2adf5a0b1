// Package operator serves the operator pages: server-rendered HTML for the
// credentials view, the rate budgets and recent events, with confirmed,
// audited actions.
//
// The pages live under Prefix (/ui/) on the worker, behind the admin token:
// a request carries it as a bearer header, or a browser signs in once with
// a form that takes the token and sets a signed session cookie (nothing of
// the token itself is in the cookie). There is no build step and no script:
// html/template, inline CSS, and a meta refresh on the list pages.
//
//   - Credentials: each credential's state, generation, bars of the time
//     left until its token expires and until its next refresh, and its last
//     error; filtered by vendor, state and id prefix, and paginated on the
//     server (sorted by id, a page at a time), so that a store of 100k
//     credentials is read once per page and never rendered whole.
//   - Budgets: used against limit per vendor account, and paused-until
//     after a 429.
//   - Events: the last events of the JetStream stream, newest first, showing
//     only known, secret-free fields of their data.
//
// Actions (rotate now, revoke, re-enable with a new secret, retry now) each
// take a confirmation page, are posted with a CSRF token tied to the
// session, and are audited in the log (who, what, which credential; never
// a secret). The work itself is done by the interfaces in Deps, which the
// app satisfies with the same code paths as the admin API.
package operator
