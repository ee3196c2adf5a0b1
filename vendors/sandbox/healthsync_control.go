package sandbox

import "net/http"

// HealthSync's control endpoints, the Go methods as JSON over HTTP for other
// processes (cmd/sandbox, a benchmark):
//
//	POST   /_sandbox/healthsync/keys                     {"account","scopes"}  201 {"id","key"}
//	GET    /_sandbox/healthsync/accounts/{account}/keys  [{"id","name","scopes","created_at","last_used_at","uses","revoked","revoked_at"}, ...]
//	DELETE /_sandbox/healthsync/keys/{id}                204, or 404 when no active key has this id
//	PUT    /_sandbox/healthsync/accounts/{account}/plan  {"limit"}  204 (0: default, negative: none)
//	POST   /_sandbox/healthsync/service-accounts         {"account","client_id","client_secret","scopes"}  204
//	POST   /_sandbox/healthsync/grants                   {"account","client_id","scopes"}  201 {"refresh_token"}
//	DELETE /_sandbox/healthsync/grants/{account}/{client_id}  200 {"revoked":n}
//	PUT    /_sandbox/healthsync/settings                 {"refresh_rotation":bool}  204
func (v *healthSyncSandbox) controlRoutes(mux *http.ServeMux) {
	const base = ControlPath + "healthsync/"
	s := v.s
	mux.HandleFunc("POST "+base+"keys", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Account string   `json:"account"`
			Scopes  []string `json:"scopes"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.Account == "" {
			controlError(w, http.StatusBadRequest, "account is required")
			return
		}
		id, key := s.AddHealthSyncKey(in.Account, in.Scopes)
		writeJSON(w, http.StatusCreated, "application/json", map[string]string{"id": id, "key": key})
	})
	mux.HandleFunc("GET "+base+"accounts/{account}/keys", func(w http.ResponseWriter, r *http.Request) {
		type keyJSON struct {
			hsKeyJSON
			Uses int `json:"uses"`
		}
		keys := s.HealthSyncKeys(r.PathValue("account"))
		out := make([]keyJSON, 0, len(keys))
		for _, k := range keys {
			out = append(out, keyJSON{hsKeyJSON: toHSKeyJSON(k), Uses: k.Uses})
		}
		writeJSON(w, http.StatusOK, "application/json", out)
	})
	mux.HandleFunc("DELETE "+base+"keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !s.RevokeHealthSyncKey(r.PathValue("id")) {
			controlError(w, http.StatusNotFound, "no active key with this id")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT "+base+"accounts/{account}/plan", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Limit int `json:"limit"`
		}
		if !decode(w, r, &in) {
			return
		}
		s.SetHealthSyncPlan(r.PathValue("account"), in.Limit)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+base+"service-accounts", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Account      string   `json:"account"`
			ClientID     string   `json:"client_id"`
			ClientSecret string   `json:"client_secret"`
			Scopes       []string `json:"scopes"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.Account == "" || in.ClientID == "" || in.ClientSecret == "" {
			controlError(w, http.StatusBadRequest, "account, client_id and client_secret are required")
			return
		}
		s.AddHealthSyncServiceAccount(in.Account, in.ClientID, in.ClientSecret, in.Scopes)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+base+"grants", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Account  string   `json:"account"`
			ClientID string   `json:"client_id"`
			Scopes   []string `json:"scopes"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.Account == "" || in.ClientID == "" {
			controlError(w, http.StatusBadRequest, "account and client_id are required")
			return
		}
		rt := s.GrantHealthSync(in.Account, in.ClientID, in.Scopes)
		writeJSON(w, http.StatusCreated, "application/json", map[string]string{"refresh_token": rt})
	})
	mux.HandleFunc("DELETE "+base+"grants/{account}/{client_id}", func(w http.ResponseWriter, r *http.Request) {
		n := s.RevokeHealthSyncGrants(r.PathValue("account"), r.PathValue("client_id"))
		writeJSON(w, http.StatusOK, "application/json", map[string]int{"revoked": n})
	})
	mux.HandleFunc("PUT "+base+"settings", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			RefreshRotation *bool `json:"refresh_rotation"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.RefreshRotation != nil {
			s.SetHealthSyncRefreshRotation(*in.RefreshRotation)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
