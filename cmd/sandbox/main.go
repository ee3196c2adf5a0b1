// Command sandbox runs the vendor emulator (vendors/sandbox) on its own, for
// trying tokenrelay against fake vendors from another process or by hand.
//
//	sandbox -addr 127.0.0.1:8090 -client clinic-42:s3cret -clients clients.txt
//
// Halaxy is then at http://127.0.0.1:8090/halaxy/main/, the generic OAuth 2.0
// server at http://127.0.0.1:8090/oauth2/token, and the control endpoints
// (clients, faults, settings, stats) under /_sandbox/, as the package
// documentation of vendors/sandbox lists.
//
// A clients file has one "client_id:client_secret" a line; blank lines and
// lines starting with # are skipped.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

// client is a client id and secret to preload.
type client struct{ id, secret string }

type config struct {
	addr             string
	tokenLifetime    time.Duration
	claimedExpiresIn time.Duration
	clients          []client
	level            zerolog.Level
	version          bool // print the build and exit
}

// run parses args, starts the sandbox and serves until ctx is done. Logs go
// to logOut; -version prints the build to stdout and returns.
func run(ctx context.Context, args []string, stdout, logOut io.Writer) error {
	cfg, err := parseFlags(args, logOut)
	if err != nil {
		return err
	}
	if cfg.version {
		_, err := fmt.Fprintln(stdout, buildinfo.Read())
		return err
	}
	log := zerolog.New(logOut).Level(cfg.level).With().Timestamp().Logger()
	sb := sandbox.New(sandbox.Options{
		RealTokenLifetime: cfg.tokenLifetime,
		ClaimedExpiresIn:  cfg.claimedExpiresIn,
		Logger:            log,
	})
	if cfg.claimedExpiresIn == 0 {
		sb.SetClaimedExpiresIn(0) // Options read zero as the default
	}
	for _, c := range cfg.clients {
		sb.AddClient(c.id, c.secret)
	}
	return sb.Serve(ctx, cfg.addr)
}

func parseFlags(args []string, out io.Writer) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8090", "listen address (the control endpoints have no authentication: keep it on loopback)")
	fs.DurationVar(&cfg.tokenLifetime, "token-lifetime", sandbox.DefaultRealTokenLifetime, "how long issued tokens really work")
	fs.DurationVar(&cfg.claimedExpiresIn, "claimed-expires-in", sandbox.DefaultClaimedExpiresIn, "the expires_in Halaxy's token answers claim (zero or negative to emulate a broken vendor)")
	fs.Func("client", "a client to preload, as `id:secret` (repeatable)", func(v string) error {
		c, err := parseClient(v)
		if err != nil {
			return err
		}
		cfg.clients = append(cfg.clients, c)
		return nil
	})
	fs.Func("clients", "a `file` of clients to preload, one id:secret a line", func(path string) error {
		cs, err := readClients(path)
		if err != nil {
			return err
		}
		cfg.clients = append(cfg.clients, cs...)
		return nil
	})
	fs.BoolVar(&cfg.version, "version", false, "print the version, commit and Go version, and exit")
	level := fs.String("log-level", "info", "log level: debug (every request), info, warn, error")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || *level == "" {
		return config{}, fmt.Errorf("-log-level %q: use debug, info, warn or error", *level)
	}
	cfg.level = lvl
	if cfg.tokenLifetime <= 0 {
		return config{}, fmt.Errorf("-token-lifetime %s: must be positive", cfg.tokenLifetime)
	}
	return cfg, nil
}

func parseClient(v string) (client, error) {
	id, secret, ok := strings.Cut(v, ":")
	if !ok || id == "" || secret == "" {
		return client{}, errors.New("want id:secret")
	}
	return client{id: id, secret: secret}, nil
}

func readClients(path string) ([]client, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []client
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c, err := parseClient(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
