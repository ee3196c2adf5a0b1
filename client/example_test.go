package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/tokenrelay/tokenrelay/client"
)

// A service calls a vendor's API with the relay's token for one credential.
// An in-process NATS server, a stand-in for the relay's token service and
// a stand-in for the vendor's API make the example self-contained.
func Example() {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(5 * time.Second) {
		log.Fatal("nats server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	// The relay's side (package tokenservice in the worker): it knows one
	// credential.
	_, err = nc.Subscribe(client.TokenSubject("", "*", "*"), func(m *nats.Msg) {
		reply := client.TokenReply{Error: client.CodeNotFound, Message: "no such credential"}
		if m.Subject == client.TokenSubject("", "halaxy-au", "clinic-42") {
			reply = client.TokenReply{AccessToken: "tok-1", TokenType: "Bearer",
				ExpiresAt: time.Now().Add(15 * time.Minute), Generation: 1}
		}
		body, _ := json.Marshal(reply)
		_ = m.Respond(body)
	})
	if err != nil {
		log.Fatal(err)
	}

	// The vendor's side: it shows the credentials it was sent.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "vendor got:", r.Header.Get("Authorization"))
	}))
	defer api.Close()

	// The service's side.
	ts, err := client.NewTokenSource(nc, "halaxy-au", "clinic-42")
	if err != nil {
		log.Fatal(err)
	}
	defer ts.Close()

	// oauth2.NewClient keeps each token until shortly before it expires;
	// &http.Client{Transport: &oauth2.Transport{Source: ts}} switches to
	// a renewed token as soon as its token.renewed event arrives.
	httpClient := oauth2.NewClient(context.Background(), ts)
	resp, err := httpClient.Get(api.URL + "/Patient")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	unknown, err := client.NewTokenSource(nc, "halaxy-au", "clinic-99")
	if err != nil {
		log.Fatal(err)
	}
	defer unknown.Close()
	_, err = unknown.Token()
	fmt.Println(errors.Is(err, client.ErrNotFound), err)

	// Output:
	// vendor got: Bearer tok-1
	// true get token halaxy-au/clinic-99: tokenrelay: credential not found: no such credential
}
