package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// tokenCall is one token-endpoint call a worker made, as its proxy saw it.
type tokenCall struct {
	Slot     string // the worker slot that made it
	Instance int    // which start of that slot
	Client   string // the OAuth client id, i.e. the credential
	Start    time.Time
	End      time.Time
	Status   int    // the vendor's answer; 0 when the worker went first
	Token    string // fingerprint of the token issued, "" if none
}

// callLog collects the token calls of every worker.
type callLog struct {
	mu    sync.Mutex
	calls []tokenCall
}

func (l *callLog) add(c tokenCall) {
	l.mu.Lock()
	l.calls = append(l.calls, c)
	l.mu.Unlock()
}

func (l *callLog) all() []tokenCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tokenCall(nil), l.calls...)
}

// vendorProxy stands between one worker slot and the sandbox: each worker
// has a base URL of its own, so every token call is known to come from
// that worker, and from which of its starts. That is how an extra call is
// traced to the worker that held the renewal: the sandbox cannot tell
// workers apart (they all present the credential's client id).
type vendorProxy struct {
	slot     string
	upstream string // the sandbox's http://host:port
	instance func() int
	log      *callLog
	onCall   func(slot string, r *http.Request)
	client   *http.Client
	srv      *http.Server
	URL      string
}

func startProxy(slot, upstream string, instance func() int, log *callLog, onCall func(string, *http.Request)) (*vendorProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &vendorProxy{slot: slot, upstream: upstream, instance: instance, log: log, onCall: onCall,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}, URL: "http://" + ln.Addr().String()}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *vendorProxy) close() { _ = p.srv.Close() }

// ServeHTTP forwards the request. A worker killed mid-call does not stop
// it: the vendor finishes what it was asked (issues the token, creates the
// key), and the answer is lost, as when a client dies after sending.
func (p *vendorProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "proxy: read body", http.StatusBadGateway)
		return
	}
	if p.onCall != nil {
		p.onCall(p.slot, r)
	}
	isToken := strings.HasSuffix(r.URL.Path, "/token")
	call := tokenCall{Slot: p.slot, Instance: p.instance(), Start: time.Now()}
	if isToken {
		var req struct {
			ClientID string `json:"client_id"`
		}
		_ = json.Unmarshal(body, &req)
		call.Client = req.ClientID
	}
	out, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := p.client.Do(out)
	var respBody []byte
	if err == nil {
		respBody, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if isToken {
		call.End = time.Now()
		if err == nil {
			call.Status = resp.StatusCode
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			if json.Unmarshal(respBody, &tok) == nil && tok.AccessToken != "" {
				call.Token = secret.Fingerprint(tok.AccessToken)
			}
		}
		p.log.add(call)
	}
	if err != nil {
		http.Error(w, "proxy: upstream", http.StatusBadGateway)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(respBody)
}
