package adminclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/secret"
)

// A program revokes a credential and reads the refusal of another: the
// admin API's errors come back as *adminclient.Error with the API's code.
func Example() {
	// A stand-in for a worker's admin API.
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/admin/credentials/clinic-42/revoke" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"not_found","message":"no credential clinic-7"}`))
	}))
	defer worker.Close()

	c := &adminclient.Client{BaseURL: worker.URL, Token: secret.New("admin-token")}
	ctx := context.Background()
	fmt.Println(c.Revoke(ctx, "clinic-42", "practice closed"))
	err := c.Revoke(ctx, "clinic-7", "")
	if e, ok := errors.AsType[*adminclient.Error](err); ok {
		fmt.Println(e.Status, e.Code)
	}
	// Output:
	// <nil>
	// 404 not_found
}
