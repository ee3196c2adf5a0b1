package deployments_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
	"github.com/tokenrelay/tokenrelay/secret"
)

// natsUsers are the users of nats/nats-server.conf and the environment
// variable holding each one's password.
var natsUsers = map[string]string{
	"operator":        "NATS_OPERATOR_PASSWORD",
	"tokenrelay":      "NATS_TOKENRELAY_PASSWORD",
	"consumer-a":      "NATS_CONSUMER_A_PASSWORD",
	"event-reader":    "NATS_EVENT_READER_PASSWORD",
	"batch-submitter": "NATS_BATCH_SUBMITTER_PASSWORD",
}

// shippedNATS runs a NATS server from nats/nats-server.conf, unchanged but
// for where it listens and stores: TLS with a certificate made here,
// JetStream encrypted with a fresh key, each user's password from the
// environment as the file expects.
type shippedNATS struct {
	t      *testing.T
	url    string
	caFile string
}

func startShippedNATS(t *testing.T) *shippedNATS {
	t.Helper()
	dir := t.TempDir()
	caFile := setNATSEnv(t, dir)
	opts, err := server.ProcessConfigFile("nats/nats-server.conf")
	require.NoError(t, err, "the shipped NATS configuration does not load")
	require.NotNil(t, opts.TLSConfig, "TLS is on")
	require.Equal(t, server.ChaCha, opts.JetStreamCipher, "JetStream is encrypted at rest")
	require.NotEmpty(t, opts.JetStreamKey)
	// Only where it listens and stores differs from production.
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "127.0.0.1", -1
	opts.StoreDir = filepath.Join(dir, "jetstream")
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	require.True(t, srv.ReadyForConnections(10*time.Second), "the NATS server did not start")
	return &shippedNATS{t: t, url: fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port), caFile: caFile}
}

// conn is one client of the server and the asynchronous errors (such as
// permission violations) the server sent it.
type conn struct {
	*nats.Conn
	mu   sync.Mutex
	errs []error
}

// connect connects as user, with the inbox prefix the configuration gives
// that user ("" for nats.go's default _INBOX.).
func (s *shippedNATS) connect(user, inbox string) *conn {
	s.t.Helper()
	c := &conn{}
	opts := []nats.Option{
		nats.UserInfo(user, os.Getenv(natsUsers[user])), nats.RootCAs(s.caFile), nats.Name(user),
		nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.errs = append(c.errs, err)
		}),
	}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(s.url, opts...)
	require.NoError(s.t, err, "connect as %s", user)
	s.t.Cleanup(nc.Close)
	c.Conn = nc
	return c
}

// requireViolation waits for the server's permission violation naming
// what ("Publish to \"x\"" or "Subscription to \"x\"").
func (c *conn) requireViolation(t *testing.T, what string) {
	t.Helper()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, err := range c.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), what) {
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "no permissions violation for %s", what)
}

// requireSubscribeRefused subscribes to subject and expects the server to
// refuse it.
func (c *conn) requireSubscribeRefused(t *testing.T, subject string) {
	t.Helper()
	sub, err := c.SubscribeSync(subject)
	require.NoError(t, err)
	_, err = sub.NextMsg(5 * time.Second)
	require.ErrorIs(t, err, nats.ErrPermissionViolation, "subscribe to %s", subject)
	c.requireViolation(t, fmt.Sprintf("Subscription to %q", subject))
}

// requirePublishRefused sends a request to subject and expects the server
// to refuse the publish: the request gets no answer at all.
func (c *conn) requirePublishRefused(t *testing.T, subject string) {
	t.Helper()
	_, err := c.Request(subject, []byte("{}"), 300*time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "request on %s", subject)
	c.requireViolation(t, fmt.Sprintf("Publish to %q", subject))
}

// The shipped NATS configuration, on a real server, keeps each client to
// its part: a consumer allowed one vendor's tokens gets them and nothing
// else, reads no other inbox and cannot touch JetStream; no reply subject
// it names makes tokenrelay publish outside the inboxes; the event reader
// reads the stream and cannot change it; the batch submitter can only
// submit.
func TestShippedNATSConfigLeastPrivilege(t *testing.T) {
	s := startShippedNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	// tokenrelay: sets up its stream, publishes an event, serves tokens.
	tr := s.connect("tokenrelay", "")
	trJS, err := jetstream.New(tr.Conn)
	require.NoError(t, err)
	_, err = events.EnsureStream(ctx, trJS, events.StreamConfig{})
	require.NoError(t, err, "tokenrelay sets up its stream")
	_, err = trJS.Publish(ctx, client.RenewedSubject("", "halaxy-au", "clinic-a"), []byte(`{"specversion":"1.0"}`))
	require.NoError(t, err, "tokenrelay publishes an event")
	creds := map[string]store.Credential{
		"clinic-a": {ID: "clinic-a", Vendor: "halaxy-au", State: store.StateActive, Generation: 1,
			Token: store.Token{AccessToken: secret.New("token-of-a"), TokenType: "Bearer", ExpiresAt: time.Now().Add(time.Hour)}},
		"clinic-b": {ID: "clinic-b", Vendor: "portal", State: store.StateActive, Generation: 1,
			Token: store.Token{AccessToken: secret.New("token-of-b"), TokenType: "Bearer", ExpiresAt: time.Now().Add(time.Hour)}},
	}
	var reads atomic.Int64
	var logs testenv.Buffer
	svc, err := tokenservice.New(tr.Conn, tokenservice.Options{Logger: zerolog.New(&logs),
		Reader: tokenservice.TokenReaderFunc(func(_ context.Context, id string) (store.Credential, error) {
			reads.Add(1)
			if c, ok := creds[id]; ok {
				return c, nil
			}
			return store.Credential{}, store.ErrNotFound
		})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	require.NoError(t, tr.Flush())

	t.Run("tokenrelay hears renewals and revocations for its token cache", func(t *testing.T) {
		for _, subject := range []string{"token.renewed.>", "key.revoked.>"} {
			sub, err := tr.SubscribeSync(subject)
			require.NoError(t, err)
			require.NoError(t, tr.Flush()) // a refusal comes before the flush's answer
			_, err = sub.NextMsg(100 * time.Millisecond)
			require.ErrorIs(t, err, nats.ErrTimeout, "subscribe to %s", subject)
			require.NoError(t, sub.Unsubscribe())
		}
	})

	// The operator watches everything, as an attacker would hope to write.
	op := s.connect("operator", "")
	watch, err := op.SubscribeSync(">")
	require.NoError(t, err)
	require.NoError(t, op.Flush())

	a := s.connect("consumer-a", "_INBOX.consumer-a")
	t.Run("consumer gets its vendor's token", func(t *testing.T) {
		ts, err := client.NewTokenSource(a.Conn, "halaxy-au", "clinic-a", client.WithTimeout(5*time.Second))
		require.NoError(t, err)
		defer func() { _ = ts.Close() }()
		tok, err := ts.Token()
		require.NoError(t, err)
		require.Equal(t, "token-of-a", tok.AccessToken)
	})
	t.Run("consumer is refused another vendor's token", func(t *testing.T) {
		before := reads.Load()
		a.requirePublishRefused(t, client.TokenSubject("", "portal", "clinic-b"))
		require.Equal(t, before, reads.Load(), "the request never reached tokenrelay")
		a.requireSubscribeRefused(t, client.RenewedSubject("", "portal", "clinic-b"))
	})
	t.Run("consumer reads no other inbox", func(t *testing.T) {
		a.requireSubscribeRefused(t, "_INBOX.>")
		a.requireSubscribeRefused(t, "_INBOX.batch-submitter.>")
		a.requireSubscribeRefused(t, "token.get.>") // nor the requests of others
	})
	t.Run("consumer cannot touch JetStream or services", func(t *testing.T) {
		a.requirePublishRefused(t, "$JS.API.INFO")
		a.requirePublishRefused(t, "$JS.API.STREAM.INFO.TOKENRELAY")
		a.requirePublishRefused(t, "$JS.API.STREAM.DELETE.TOKENRELAY")
		a.requirePublishRefused(t, "$JS.API.CONSUMER.CREATE.TOKENRELAY")
		a.requirePublishRefused(t, "$SRV.PING")
		a.requirePublishRefused(t, "token.renewed.halaxy-au.clinic-a") // no forged events
		js, err := jetstream.New(a.Conn)
		require.NoError(t, err)
		jctx, jcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer jcancel()
		_, err = js.Stream(jctx, events.DefaultStreamName)
		require.Error(t, err)
	})
	t.Run("no reply subject makes tokenrelay publish elsewhere", func(t *testing.T) {
		defer func() { _ = watch.Unsubscribe() }() // so that later requests meet no interest
		subject := client.TokenSubject("", "halaxy-au", "clinic-a")
		bad := []string{"events.x", "token.renewed.fake.x", "webhook.halaxy-au.forged", "$JS.API.STREAM.PURGE.TOKENRELAY",
			"_INBOXX.consumer-a.x", "_INBOX.>"}
		for _, reply := range bad {
			require.NoError(t, a.PublishRequest(subject, reply, nil))
		}
		// Handled in order: once this is answered, the others were dealt with;
		// once the operator sees the answer, it has seen all tokenrelay sent before.
		msg, err := a.Request(subject, nil, 5*time.Second)
		require.NoError(t, err)
		require.Contains(t, string(msg.Data), "token-of-a")
		var published []string
		for {
			m, err := watch.NextMsg(5 * time.Second)
			require.NoError(t, err, "the operator never saw the answer")
			if m.Subject == msg.Subject {
				break
			}
			if m.Subject != subject && !strings.HasPrefix(m.Subject, "_INBOX.") && !strings.HasPrefix(m.Subject, "$JS.EVENT.") {
				published = append(published, m.Subject)
			}
		}
		require.Empty(t, published, "tokenrelay published outside the inboxes")
		require.Equal(t, len(bad), strings.Count(logs.String(), "request dropped: its reply subject is not an inbox"), logs.String())
		info, err := (func() (*jetstream.StreamInfo, error) {
			st, err := trJS.Stream(ctx, events.DefaultStreamName)
			if err != nil {
				return nil, err
			}
			return st.Info(ctx)
		})()
		require.NoError(t, err)
		require.EqualValues(t, 1, info.State.Msgs, "no event was injected into the stream")
	})

	t.Run("event reader reads the stream and changes nothing", func(t *testing.T) {
		opJS, err := jetstream.New(op.Conn)
		require.NoError(t, err)
		_, err = opJS.CreateOrUpdateConsumer(ctx, events.DefaultStreamName, jetstream.ConsumerConfig{
			Durable: "event-reader", AckPolicy: jetstream.AckExplicitPolicy})
		require.NoError(t, err, "the operator creates the reader's consumer")

		r := s.connect("event-reader", "_INBOX.event-reader")
		js, err := jetstream.New(r.Conn)
		require.NoError(t, err)
		cons, err := js.Consumer(ctx, events.DefaultStreamName, "event-reader")
		require.NoError(t, err)
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		var got []string
		for m := range batch.Messages() {
			got = append(got, m.Subject())
			require.NoError(t, m.DoubleAck(ctx))
		}
		require.NoError(t, batch.Error())
		require.Equal(t, []string{"token.renewed.halaxy-au.clinic-a"}, got)

		r.requirePublishRefused(t, "$JS.API.STREAM.DELETE.TOKENRELAY")
		r.requirePublishRefused(t, "$JS.API.STREAM.PURGE.TOKENRELAY")
		r.requirePublishRefused(t, "$JS.API.CONSUMER.CREATE.TOKENRELAY.spy")
		r.requirePublishRefused(t, "$JS.API.CONSUMER.DELETE.TOKENRELAY.event-reader")
		r.requirePublishRefused(t, "token.get.halaxy-au.clinic-a")
		r.requirePublishRefused(t, "token.renewed.halaxy-au.clinic-a")
		r.requireSubscribeRefused(t, "token.>")
		r.requireSubscribeRefused(t, "_INBOX.consumer-a.>")
	})
	t.Run("batch submitter can only submit", func(t *testing.T) {
		b := s.connect("batch-submitter", "_INBOX.batch-submitter")
		_, err := b.Request("request.submit", []byte("{}"), 2*time.Second)
		require.ErrorIs(t, err, nats.ErrNoResponders, "the publish is allowed (no request service runs here)")
		b.requirePublishRefused(t, "token.get.halaxy-au.clinic-a")
		b.requirePublishRefused(t, "$JS.API.STREAM.INFO.TOKENRELAY")
		b.requireSubscribeRefused(t, "request.>")
		b.requireSubscribeRefused(t, "_INBOX.consumer-a.>")
	})
	require.NotContains(t, logs.String(), "token-of-")
}

// setNATSEnv sets every variable nats/nats-server.conf names: a server
// certificate made in dir (it returns its CA), a JetStream key and the
// passwords, in the form ../README.md gives (a letter first, then hex).
func setNATSEnv(t *testing.T, dir string) (caFile string) {
	t.Helper()
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	t.Setenv("NATS_TLS_CERT", certFile)
	t.Setenv("NATS_TLS_KEY", keyFile)
	t.Setenv("NATS_JS_KEY", "js"+randomHex(t))
	for _, env := range natsUsers {
		t.Setenv(env, "pw"+randomHex(t))
	}
	return caFile
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// writeTestPKI writes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it into dir, as ../README.md tells operators to make.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokenrelay test CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), DNSNames: []string{"localhost", "nats"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	write := func(name, typ string, b []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}

// The installed nats-server (2.9.10 on the CI machines, older than the
// embedded one above) accepts the shipped configuration too, with values
// in the form ../README.md gives.
func TestShippedNATSConfigOnInstalledServer(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("no nats-server installed")
		}
	}
	setNATSEnv(t, t.TempDir())
	out, err := exec.Command(bin, "-t", "-c", "nats/nats-server.conf").CombinedOutput()
	require.NoError(t, err, "%s -t: %s", bin, out)
}
