package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
)

// keysOf is the key material of in.
func keysOf(in adminclient.CredentialInput) store.Keys {
	return store.Keys{ClientSecret: secret.New(in.ClientSecret), PrivateKey: secret.New(in.PrivateKey), KeyID: in.KeyID, APIKey: secret.New(in.APIKey),
		RefreshToken: secret.New(in.RefreshToken)}
}

// credentialOf is in as the configuration file has it, for its checks.
func credentialOf(in adminclient.CredentialInput) config.Credential {
	k := keysOf(in)
	return config.Credential{ID: in.ID, Vendor: in.Vendor, ClientID: in.ClientID,
		ClientSecret: k.ClientSecret, PrivateKey: k.PrivateKey, KeyID: k.KeyID, APIKey: k.APIKey, RefreshToken: k.RefreshToken}
}

func view(s store.Summary) adminclient.CredentialView {
	return adminclient.CredentialView{ID: s.ID, Vendor: s.Vendor, State: string(s.State), Generation: s.Generation,
		ClientIDFingerprint: s.ClientIDFingerprint, ExpiresAt: s.ExpiresAt, NextRefresh: s.NextRefresh,
		Failures: s.Failures, LastErrorClass: s.LastClass, LastError: s.LastError, UpdatedAt: s.UpdatedAt}
}

// list answers every credential, filtered by ?vendor= and ?state=.
func (a *api) list(w http.ResponseWriter, r *http.Request) {
	vendor, state := r.URL.Query().Get("vendor"), r.URL.Query().Get("state")
	out := []adminclient.CredentialView{}
	err := a.d.Store.Scan(r.Context(), func(s store.Summary) error {
		if (vendor == "" || s.Vendor == vendor) && (state == "" || string(s.State) == state) {
			out = append(out, view(s))
		}
		return nil
	})
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	c, err := a.d.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, view(summaryOf(c)))
}

func summaryOf(c store.Credential) store.Summary {
	return store.Summary{ID: c.ID, Vendor: c.Vendor, ClientIDFingerprint: secret.Fingerprint(c.ClientID), State: c.State,
		Generation: c.Generation, IssuedAt: c.Token.IssuedAt, ExpiresAt: c.Token.ExpiresAt, NextRefresh: c.NextRefresh,
		Failures: c.Failures, LastClass: c.LastClass, LastError: c.LastError, UpdatedAt: c.UpdatedAt}
}

// add adds or updates one credential.
func (a *api) add(w http.ResponseWriter, r *http.Request) {
	var in adminclient.CredentialInput
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminclient.MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "the body must be one JSON credential: "+jsonProblem(err))
		return
	}
	res, err := a.put(r.Context(), in)
	var invalid *invalidError
	switch {
	case errors.As(err, &invalid):
		writeError(w, http.StatusUnprocessableEntity, "invalid_credential", invalid.Error())
		return
	case err != nil:
		a.storeError(w, r, err)
		return
	}
	a.audit(r, "add", in.ID).Str("vendor", in.Vendor).Str("result", string(res)).Msg("credential added")
	status := http.StatusOK
	if res == store.Created {
		status = http.StatusCreated
	}
	writeJSON(w, status, adminclient.AddResult{ID: in.ID, Result: string(res)})
}

// invalidError is a credential that breaks the rules; its message names the
// fields and never quotes a secret.
type invalidError struct{ err error }

func (e *invalidError) Error() string {
	var ve *config.ValidationError
	if errors.As(e.err, &ve) {
		msgs := make([]string, len(ve.Problems))
		for i, p := range ve.Problems {
			msgs[i] = p.Path + ": " + p.Message
		}
		return strings.Join(msgs, "; ")
	}
	return e.err.Error()
}

func (a *api) put(ctx context.Context, in adminclient.CredentialInput) (store.UpsertResult, error) {
	if err := a.d.Config.CheckCredential(credentialOf(in)); err != nil {
		return "", &invalidError{err}
	}
	return a.d.Store.Upsert(ctx, store.NewCredential{ID: in.ID, Vendor: in.Vendor, ClientID: in.ClientID, Keys: keysOf(in)})
}

// importLines adds one credential per line of a JSON-lines body. A bad line
// is reported by its number and the good ones still land; an id that
// appears twice in one import is refused the second time.
func (a *api) importLines(w http.ResponseWriter, r *http.Request) {
	sc := bufio.NewScanner(http.MaxBytesReader(w, r.Body, adminclient.MaxImport))
	sc.Buffer(make([]byte, 64<<10), adminclient.MaxBody)
	res := adminclient.ImportResult{Failed: []adminclient.ImportFailed{}}
	seen := map[string]int{}
	for sc.Scan() {
		res.Lines++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var in adminclient.CredentialInput
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			res.Failed = append(res.Failed, adminclient.ImportFailed{Line: res.Lines, Error: "not a JSON credential: " + jsonProblem(err)})
			continue
		}
		if first, dup := seen[in.ID]; dup && in.ID != "" {
			res.Failed = append(res.Failed, adminclient.ImportFailed{Line: res.Lines, ID: in.ID, Error: fmt.Sprintf("duplicate id (also on line %d)", first)})
			continue
		}
		seen[in.ID] = res.Lines
		out, err := a.put(r.Context(), in)
		var invalid *invalidError
		switch {
		case errors.As(err, &invalid):
			res.Failed = append(res.Failed, adminclient.ImportFailed{Line: res.Lines, ID: in.ID, Error: invalid.Error()})
		case err != nil:
			a.storeError(w, r, err)
			return
		case out == store.Created:
			res.Created++
		case out == store.Updated:
			res.Updated++
		default:
			res.Unchanged++
		}
	}
	if err := sc.Err(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("reading line %d: %v", res.Lines+1, err))
		return
	}
	a.audit(r, "import", "").Int("lines", res.Lines).Int("created", res.Created).Int("updated", res.Updated).
		Int("failed", len(res.Failed)).Msg("credentials imported")
	writeJSON(w, http.StatusOK, res)
}

// revoke revokes a credential now (see Revoke).
func (a *api) revoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in adminclient.RevokeInput
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminclient.MaxBody)).Decode(&in); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", `the body must be {"reason": "..."} or empty: `+jsonProblem(err))
			return
		}
	}
	vendor, err := Revoke(r.Context(), a.d, id, in.Reason)
	if errors.Is(err, ErrVendorRefused) {
		a.d.Logger.Warn().Err(err).Str("credential", id).Msg("admin: vendor refused to revoke the key")
		writeError(w, http.StatusBadGateway, "vendor_error", "the vendor did not revoke the key; nothing changed: "+errors.Unwrap(err).Error())
		return
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	a.audit(r, "revoke", id).Str("vendor", vendor).Str("reason", in.Reason).Msg("credential revoked by operator")
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "state": string(store.StateRevoked)})
}

// ErrVendorRefused wraps the error of a vendor that did not revoke a key
// (Deps.RevokeAtVendor); nothing was changed.
var ErrVendorRefused = errors.New("admin: the vendor did not revoke the key")

// vendorRefusal is ErrVendorRefused around the vendor's error; Unwrap
// gives the vendor's error alone.
type vendorRefusal struct{ err error }

func (e *vendorRefusal) Error() string        { return ErrVendorRefused.Error() + ": " + e.err.Error() }
func (e *vendorRefusal) Unwrap() error        { return e.err }
func (e *vendorRefusal) Is(target error) bool { return target == ErrVendorRefused }

// Revoke revokes a credential now, as POST /admin/credentials/{id}/revoke
// does, for every operator surface to share: at the vendor where
// d.RevokeAtVendor can, then in the store with a key.revoked event (reason
// revoked_by_operator; reason, if any, as its message), describing the
// latest generation if a renewal lands meanwhile. It returns the
// credential's vendor. Errors: store.ErrNotFound, store.ErrAlreadyRevoked,
// ErrVendorRefused (nothing changed), or the store's. The caller audits.
func Revoke(ctx context.Context, d Deps, id, reason string) (vendor string, err error) {
	clock := d.Clock
	if clock == nil {
		clock = time.Now
	}
	for attempt := 0; ; attempt++ {
		c, err := d.Store.Get(ctx, id)
		if err != nil {
			return "", err
		}
		if c.State == store.StateRevoked {
			return c.Vendor, store.ErrAlreadyRevoked
		}
		if d.RevokeAtVendor != nil && attempt == 0 {
			if err := d.RevokeAtVendor(ctx, c); err != nil {
				if _, busy := errors.AsType[*store.BusyError](err); busy {
					return c.Vendor, err // held by another worker: not the vendor's refusal
				}
				return c.Vendor, &vendorRefusal{err}
			}
		}
		ev, err := events.New(events.TypeKeyRevoked, c.Vendor, c.ID, clock(), events.KeyRevoked{
			Vendor: c.Vendor, Credential: c.ID, Generation: c.Generation, Reason: events.ReasonRevokedByOperator,
			KeyFingerprint: c.KeyFingerprint(), Message: reason,
		})
		if err != nil {
			return c.Vendor, err
		}
		err = d.Store.Revoke(ctx, id, c.Generation, events.ReasonRevokedByOperator, reason, ev)
		if errors.Is(err, store.ErrStale) && attempt < 5 {
			continue // renewed meanwhile: describe the new generation
		}
		return c.Vendor, err
	}
}

// enable puts a credential back in service (see Enable).
func (a *api) enable(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in adminclient.EnableInput
	if r.ContentLength != 0 {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, adminclient.MaxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "the body must be a JSON object of new keys, or empty: "+jsonProblem(err))
			return
		}
	}
	vendor, newKeys, err := Enable(r.Context(), a.d, id, in)
	var invalid *invalidError
	switch {
	case errors.As(err, &invalid):
		writeError(w, http.StatusUnprocessableEntity, "invalid_credential", invalid.Error())
		return
	case err != nil:
		a.storeError(w, r, err)
		return
	}
	a.audit(r, "enable", id).Str("vendor", vendor).Bool("new_keys", newKeys).Msg("credential re-enabled")
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "state": string(store.StateActive)})
}

// Enable puts a credential back in service, as POST
// /admin/credentials/{id}/enable does, for every operator surface to share:
// with new keys when in has any (the credential with its keys must then
// still meet its vendor's rules, else an error naming the fields, never
// quoting a secret), active and due at once. It returns the credential's
// vendor and whether new keys were stored. The caller audits.
func Enable(ctx context.Context, d Deps, id string, in adminclient.EnableInput) (vendor string, newKeys bool, err error) {
	c, err := d.Store.Get(ctx, id)
	if err != nil {
		return "", false, err
	}
	check := adminclient.CredentialInput{ID: c.ID, Vendor: c.Vendor, ClientID: c.ClientID,
		ClientSecret: c.ClientSecret.Reveal(), PrivateKey: c.PrivateKey.Reveal(), KeyID: c.KeyID, APIKey: c.APIKey.Reveal(),
		RefreshToken: c.Keys.RefreshToken.Reveal()}
	var keys *store.Keys
	if in.ClientSecret != "" || in.PrivateKey != "" || in.KeyID != "" || in.APIKey != "" || in.RefreshToken != "" {
		check.ClientSecret, check.PrivateKey, check.KeyID, check.APIKey = in.ClientSecret, in.PrivateKey, in.KeyID, in.APIKey
		check.RefreshToken = in.RefreshToken
		k := keysOf(check)
		keys = &k
	}
	if in.ClientID != "" {
		check.ClientID = in.ClientID
	}
	if err := d.Config.CheckCredential(credentialOf(check)); err != nil {
		return c.Vendor, false, &invalidError{err}
	}
	if err := d.Store.Enable(ctx, id, in.ClientID, keys); err != nil {
		return c.Vendor, false, err
	}
	return c.Vendor, keys != nil, nil
}

// audit starts the log line of an operator action.
func (a *api) audit(r *http.Request, action, id string) *zerolog.Event {
	ev := a.d.Logger.Info().Str("audit", action).Str("remote", r.RemoteAddr)
	if id != "" {
		ev = ev.Str("credential", id)
	}
	return ev
}

// jsonProblem describes a JSON decoding error without quoting the input
// (which may hold a secret).
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s must be a %s", typ.Field, typ.Type)
	case errors.As(err, &tooBig):
		return fmt.Sprintf("body over %d bytes", tooBig.Limit)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "incomplete JSON"
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, context.Canceled):
		return "request cancelled"
	default:
		return "not a JSON object"
	}
}
