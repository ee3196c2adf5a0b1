package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/admin"
	"github.com/tokenrelay/tokenrelay/budget"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/operator"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/store"
)

// operatorPages builds the operator pages (package operator) on the same
// code paths as the admin API: revoke and re-enable go through admin.Revoke
// and admin.Enable with the admin API's dependencies.
func operatorPages(env *Env, ad admin.Deps, b *budget.Budget, log zerolog.Logger) http.Handler {
	acts := operatorActions{env: env, admin: ad}
	return operator.Handler(operator.Deps{
		Token:       env.Config.HTTP.AdminToken,
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
// keeps one (HealthSync: the API key; the others: the client secret).
func (a operatorActions) Enable(ctx context.Context, id string, newSecret secret.Value) error {
	var in admin.EnableInput
	if !newSecret.IsZero() {
		c, err := a.env.Store.Get(ctx, id)
		if err != nil {
			return readable(err)
		}
		if a.env.Config.Vendors[c.Vendor].Kind == config.KindHealthSync {
			in.APIKey = newSecret.Reveal()
		} else {
			in.ClientSecret = newSecret.Reveal()
		}
	}
	_, _, err := admin.Enable(ctx, a.admin, id, in)
	return readable(err)
}

// RetryNow makes a credential due at once, with the store's own claim
// protocol: take the claim of its current generation, then give it back
// due now (Release restores the state it had). A worker that holds the
// claim is refreshing it already.
func (a operatorActions) RetryNow(ctx context.Context, id string) error {
	c, err := a.env.Store.Get(ctx, id)
	if err != nil {
		return readable(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	owner := "operator-retry-" + hex.EncodeToString(b)
	if _, err := a.env.Store.Claim(ctx, id, c.Generation, owner, 30*time.Second); err != nil {
		var busy *store.BusyError
		if errors.As(err, &busy) {
			return errors.New("a worker is refreshing it right now")
		}
		return readable(err)
	}
	return readable(a.env.Store.Release(ctx, id, owner, time.Time{}))
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
	return err
}

// maxPerClientBudgets caps the budgets shown for a vendor that limits each
// OAuth client (one budget per credential): the first ones by id.
const maxPerClientBudgets = 50

// operatorBudgets reads the shared rate budgets of the configured vendors,
// through the worker's own budget (the one its request jobs spend).
type operatorBudgets struct {
	env    *Env
	budget *budget.Budget
}

var _ operator.Budgets = operatorBudgets{}

// Budgets returns each vendor account's budget. A reader of the budget is
// opened for the call and closed after: the page is read by people, now
// and then, and owns nothing that outlives it.
func (o operatorBudgets) Budgets(ctx context.Context) ([]operator.Budget, error) {
	cfg := o.env.Config
	names := make([]string, 0, len(cfg.Vendors))
	for name, v := range cfg.Vendors {
		if v.RateLimit.Limit > 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	sort.Strings(names)
	perClient := map[string][]string{}
	for _, name := range names {
		if budget.PerClient(string(cfg.Vendors[name].Kind)) {
			perClient[name] = nil
		}
	}
	if len(perClient) > 0 {
		err := o.env.Store.Scan(ctx, func(s store.Summary) error {
			if ids, ok := perClient[s.Vendor]; ok {
				perClient[s.Vendor] = append(ids, s.ID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	b := o.budget
	var out []operator.Budget
	for _, name := range names {
		v := cfg.Vendors[name]
		lim := budget.LimitOf(v)
		accounts := []string{budget.Account(name, "")}
		if ids, ok := perClient[name]; ok {
			slices.Sort(ids)
			accounts = accounts[:0]
			for _, id := range ids[:min(len(ids), maxPerClientBudgets)] {
				accounts = append(accounts, budget.Account(name, id))
			}
		}
		for _, account := range accounts {
			st, err := b.Status(ctx, account, lim)
			if err != nil {
				return nil, err
			}
			out = append(out, operator.Budget{Account: account, Limit: st.Limit, Per: st.Per,
				Used: st.Used, Remaining: st.Remaining, PausedUntil: st.PausedUntil})
		}
	}
	return out, nil
}
