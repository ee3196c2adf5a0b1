package app

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
)

// operatorPages builds the operator pages (package operator) on the same
// code paths as the admin API: revoke and re-enable go through admin.Revoke
// and admin.Enable with the admin API's dependencies.
func operatorPages(env *Env, ad admin.Deps, b *budget.Budget, sessions *websession.Sessions, log zerolog.Logger) http.Handler {
	acts := operatorActions{env: env, admin: ad}
	syncs, _ := ad.Syncs.(operator.Syncs) // nil: the page says syncs are off
	return operator.Handler(operator.Deps{
		Syncs:       syncs,
		Token:       env.Config.HTTP.AdminToken,
		Sessions:    sessions,
		Credentials: env.Store,
		Revoke:      acts,
		Enable:      acts,
		Retry:       acts,
		Rotate:      acts,
		Budgets:     operatorBudgets{env: env, budget: b},
		Events:      operator.NewStreamLog(env.JS, env.Config.NATS.Stream),
		Links:       []operator.Link{{Name: "Queues (asynqmon)", URL: "/asynqmon/"}},
		Logger:      log.With().Str("component", "operator").Logger(),
		Clock:       env.Clock,
	})
}

// operatorActions does what the operator pages ask, through the admin
// API's functions and the store.
type operatorActions struct {
	env   *Env
	admin admin.Deps
}

var (
	_ operator.Revoker = operatorActions{}
	_ operator.Enabler = operatorActions{}
	_ operator.Retrier = operatorActions{}
	_ operator.Rotator = operatorActions{}

	_ operator.RotatableVendors = operatorActions{}
)

// RotateNow queues a rotation, as POST /admin/credentials/{id}/rotate does.
func (a operatorActions) RotateNow(ctx context.Context, id string) error {
	_, err := admin.RotateNow(ctx, a.admin, id)
	return readable(err)
}

// CanRotate offers rotation only where the vendor can rotate keys.
func (a operatorActions) CanRotate(vendor string) bool {
	return a.admin.RotateNow != nil && canRotate(a.env.Config, vendor)
}

func (a operatorActions) Revoke(ctx context.Context, id, reason string) error {
	_, err := admin.Revoke(ctx, a.admin, id, reason)
	return readable(err)
}

// Enable re-enables a credential; a new secret goes where its vendor kind
// keeps one (the API key of a kind that authenticates with one, as
// HealthSync; the client secret of the others).
func (a operatorActions) Enable(ctx context.Context, id string, newSecret secret.Value) error {
	var in adminclient.EnableInput
	if !newSecret.IsZero() {
		c, err := a.env.Store.Get(ctx, id)
		if err != nil {
			return readable(err)
		}
		if keyIsSecret(a.env.Config.Vendors[c.Vendor]) {
			in.APIKey = newSecret.Reveal()
		} else {
			in.ClientSecret = newSecret.Reveal()
		}
	}
	_, _, err := admin.Enable(ctx, a.admin, id, in)
	return readable(err)
}

// keyIsSecret reports whether the secret of v's credentials is an API key
// (its kind takes one in its default mode), not a client secret.
func keyIsSecret(v config.Vendor) bool {
	s, _ := v.Spec()
	return s.Credentials.APIKey == kind.Needed
}

// RetryNow makes a credential due at once (store.RetryNow).
func (a operatorActions) RetryNow(ctx context.Context, id string) error {
	err := a.env.Store.RetryNow(ctx, id)
	if _, busy := errors.AsType[*store.BusyError](err); busy {
		return errors.New("a worker is refreshing it right now")
	}
	return readable(err)
}

// readable turns the store's errors into what an operator can act on,
// keeping other messages (which name fields, never secrets).
func readable(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return store.ErrNotFound
	case errors.Is(err, store.ErrAlreadyRevoked):
		return store.ErrAlreadyRevoked
	case errors.Is(err, store.ErrStale):
		return errors.New("it changed meanwhile (renewed or revoked); reload and try again")
	}
	if busy, ok := errors.AsType[*store.BusyError](err); ok {
		return busyError{busy}
	}
	return err
}

// busyError says, for people, that another worker holds the credential.
type busyError struct{ busy *store.BusyError }

func (e busyError) Error() string {
	return "another worker is refreshing this credential or rotating its key; nothing changed: try again after " +
		e.busy.Until.UTC().Format("15:04:05Z")
}

func (e busyError) Unwrap() error { return e.busy }

// operatorBudgets reads the shared rate budgets of the configured vendors
// (budget.Overview), through the worker's own budget (the one its request
// jobs spend).
type operatorBudgets struct {
	env    *Env
	budget *budget.Budget
}

var _ operator.Budgets = operatorBudgets{}

// Budgets returns each vendor account's budget, as budget.Overview lists
// them.
func (o operatorBudgets) Budgets(ctx context.Context) ([]operator.Budget, error) {
	// The index's times are on the budget's clock.
	now := time.Now()
	if o.env.BudgetClock != nil {
		now = o.env.BudgetClock()
	}
	rows, err := o.budget.Overview(ctx, o.env.Config.Vendors, now)
	if err != nil {
		return nil, err
	}
	out := make([]operator.Budget, len(rows))
	for i, r := range rows {
		out[i] = operator.Budget(r)
	}
	return out, nil
}
