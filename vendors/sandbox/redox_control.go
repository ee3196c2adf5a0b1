package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Redox control endpoint (relative to ControlPath), standing for Redox
// fetching the JWKS URL registered for an OAuth API key, which the real
// Redox does on its own schedule:
//
//	PUT /_sandbox/redox/clients/{client_id}/jwks   a JWK Set {"keys":[...]}, or {"url":"http://..."}
//	                                              to fetch it from; 200 {"client_id","kids":[...]}
//
// The client's public keys become exactly those of the set (as
// RegisterRedoxClient): a key dropped from the JWKS is refused from then on.
func (v *redoxSandbox) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+ControlPath+"redox/clients/{client_id}/jwks", func(w http.ResponseWriter, r *http.Request) {
		clientID := r.PathValue("client_id")
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, redoxMaxJWKS))
		if err != nil {
			controlError(w, http.StatusBadRequest, "body too large or unreadable")
			return
		}
		var in struct {
			URL  string            `json:"url"`
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			controlError(w, http.StatusBadRequest, `the body must be a JWK Set {"keys":[...]} or {"url":"..."}`)
			return
		}
		if in.URL != "" {
			if body, err = fetchJWKS(r.Context(), in.URL); err != nil {
				controlError(w, http.StatusBadGateway, err.Error())
				return
			}
		}
		if err := v.s.RegisterRedoxClient(clientID, body); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, "application/json", map[string]any{"client_id": clientID, "kids": v.s.RedoxKeyIDs(clientID)})
	})
}

// redoxMaxJWKS bounds a JWK Set the sandbox reads.
const redoxMaxJWKS = 1 << 20

// fetchJWKS GETs a JWKS URL as Redox would: a 200 within 10 seconds.
func fetchJWKS(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad JWKS url: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the JWKS: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, redoxMaxJWKS+1))
	if err != nil || len(body) > redoxMaxJWKS {
		return nil, fmt.Errorf("fetch the JWKS: unreadable or larger than %d bytes", redoxMaxJWKS)
	}
	return body, nil
}
