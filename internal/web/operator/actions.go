package operator

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
)

// action is one thing an operator can do to a credential.
type action struct {
	Name    string // in the URL and the audit log
	Label   string // on the button
	Explain string // on the confirmation page: what will happen
	Done    string // the message shown afterwards
	Danger  bool
	// Reason and Secret say which fields the confirmation form has.
	Reason bool
	Secret bool
}

var actionList = []action{
	{Name: "rotate", Label: "Rotate now",
		Explain: "Creates a new key at the vendor with the same permissions, verifies it, switches the credential to it and then revokes the old key (key.rotated, then key.revoked with reason rotated).",
		Done:    "Rotation started: watch for key.rotated on the events page."},
	{Name: "retry", Label: "Retry now",
		Explain: "Makes the credential due for a refresh at once, instead of waiting for its next scheduled attempt.",
		Done:    "The credential is due now: a worker refreshes it within moments (token.renewed or token.refresh_failed)."},
	{Name: "revoke", Label: "Revoke", Danger: true, Reason: true,
		Explain: "Revokes the credential: at the vendor where it can be, then here. It is no longer refreshed, token requests are refused, and key.revoked (reason revoked_by_operator) is published. Nothing is deleted; it can be re-enabled.",
		Done:    "Revoked: key.revoked was published."},
	{Name: "enable", Label: "Re-enable", Secret: true,
		Explain: "Puts the credential back in service and refreshes it at once, with the new secret if you give one (else with its stored keys).",
		Done:    "Re-enabled: a refresh is due now."},
}

var actionByName = func() map[string]action {
	m := map[string]action{}
	for _, a := range actionList {
		m[a.Name] = a
	}
	return m
}()

// available says whether an action is wired and makes sense for a
// credential.
func (p *pages) available(name string, s store.Summary) bool {
	revoked := s.State == store.StateRevoked
	switch name {
	case "rotate":
		if rv, ok := p.d.Rotate.(RotatableVendors); ok && !rv.CanRotate(s.Vendor) {
			return false
		}
		return p.d.Rotate != nil && !revoked
	case "retry":
		return p.d.Retry != nil && !revoked
	case "revoke":
		return p.d.Revoke != nil && !revoked
	case "enable":
		return p.d.Enable != nil && revoked
	}
	return false
}

func (p *pages) actionsFor(s store.Summary) []string {
	var out []string
	for _, a := range actionList {
		if p.available(a.Name, s) {
			out = append(out, a.Name)
		}
	}
	return out
}

type confirmPage struct {
	layout
	Row    row
	Action action
	Reason string
}

// confirm is the confirmation page of an action: what it will do, and a
// form that must be ticked to be sent.
func (p *pages) confirm(w http.ResponseWriter, r *http.Request) {
	p.confirmWith(w, r, http.StatusOK, "", "")
}

func (p *pages) confirmWith(w http.ResponseWriter, r *http.Request, status int, problem, reason string) {
	id := r.PathValue("id")
	a, ok := actionByName[r.PathValue("action")]
	l := p.layout(r, "", "credentials")
	if !ok {
		l.Title, l.Error = "Unknown action", "There is no action "+r.PathValue("action")+"."
		p.render(w, http.StatusNotFound, "error.html", l)
		return
	}
	l.Title = a.Label + " " + id
	sum, st, unreadable := p.summary(r.Context(), id)
	if unreadable != "" {
		l.Error = unreadable
		p.render(w, st, "error.html", l)
		return
	}
	if !p.available(a.Name, sum) {
		l.Error = a.Label + " is not possible for a credential that is " + string(sum.State) + "."
		p.render(w, http.StatusConflict, "error.html", l)
		return
	}
	l.Error = problem
	p.render(w, status, "confirm.html", confirmPage{layout: l, Row: p.row(sum, l.Now), Action: a, Reason: reason})
}

// act performs a confirmed action, audits it, and shows the credential.
func (p *pages) act(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	id := r.PathValue("id")
	a, ok := actionByName[r.PathValue("action")]
	if !ok {
		http.Error(w, "no such action", http.StatusNotFound)
		return
	}
	if !p.auth.CSRFOK(r) {
		http.Error(w, "the form is stale or was not sent from these pages; reload it and try again", http.StatusForbidden)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if len(reason) > 200 {
		p.confirmWith(w, r, http.StatusBadRequest, "The reason is over 200 characters.", reason[:200])
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		p.confirmWith(w, r, http.StatusBadRequest, "Tick the box to confirm.", reason)
		return
	}
	sum, st, problem := p.summary(r.Context(), id)
	if problem != "" {
		http.Error(w, problem, st)
		return
	}
	if !p.available(a.Name, sum) {
		p.confirmWith(w, r, http.StatusConflict, "", reason)
		return
	}
	newSecret := secret.New(r.PostFormValue("secret"))
	audit := p.d.Logger.Info().Str("audit", a.Name).Str("who", "operator").Str("via", "operator pages").
		Str("remote", r.RemoteAddr).Str("credential", id).Str("vendor", sum.Vendor)
	err := p.do(r.Context(), a.Name, id, reason, newSecret)
	if err != nil {
		p.d.Logger.Warn().Err(err).Str("audit", a.Name).Str("who", "operator").Str("remote", r.RemoteAddr).
			Str("credential", id).Bool("ok", false).Msg("operator action failed")
		p.confirmWith(w, r, statusOf(err), a.Label+" failed: "+err.Error(), reason)
		return
	}
	switch a.Name {
	case "revoke":
		audit = audit.Str("reason", reason)
	case "enable":
		audit = audit.Bool("new_secret", !newSecret.IsZero())
	}
	audit.Bool("ok", true).Msg("operator action")
	http.Redirect(w, r, Prefix+"credentials/"+id+"?done="+a.Name, http.StatusSeeOther)
}

func (p *pages) do(ctx context.Context, name, id, reason string, newSecret secret.Value) error {
	switch name {
	case "rotate":
		return p.d.Rotate.RotateNow(ctx, id)
	case "retry":
		return p.d.Retry.RetryNow(ctx, id)
	case "revoke":
		return p.d.Revoke.Revoke(ctx, id, reason)
	case "enable":
		return p.d.Enable.Enable(ctx, id, newSecret)
	}
	return errors.New("no such action")
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrAlreadyRevoked), errors.Is(err, store.ErrStale):
		return http.StatusConflict
	case errors.As(err, new(*store.BusyError)):
		return http.StatusConflict // another worker holds it for now
	default:
		return http.StatusBadGateway
	}
}
