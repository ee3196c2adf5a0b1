package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/masterkey"
	"github.com/tokenrelay/tokenrelay/internal/reseal"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

const keysUsage = `usage: tokenrelay keys COMMAND ...   (master keys; see docs/keys.md)
  status [-config PATH]                     how many sealed values are under which master key
  reseal [-config PATH] [-batch N] [-every N]
                                            seal again under the current key everything under a
                                            previous one; exits 0 when nothing is left under one
  wrap -kms URL [-stdin]                    print a master key wrapped by the KMS, for
                                            TOKENRELAY_SECRET_KEY_WRAPPED: a new random key, or
                                            with -stdin the base64 key read from standard input
The configuration (-config or TOKENRELAY_CONFIG) and the master keys (TOKENRELAY_SECRET_KEY,
TOKENRELAY_SECRET_KEYS_PREVIOUS, or their _WRAPPED forms with TOKENRELAY_KMS_URL) are read as
the worker reads them; the commands talk to Redis directly.
`

// keys runs "tokenrelay keys ...".
func keys(ctx context.Context, args []string, env func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("tokenrelay keys "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch cmd {
	case "wrap":
		kms := fs.String("kms", "", "gocloud.dev/secrets URL of the KMS key (base64key://, awskms://, gcpkms://, azurekeyvault://, hashivault://)")
		fromStdin := fs.Bool("stdin", false, "wrap the base64 master key read from standard input instead of a new one")
		if fs.Parse(rest) != nil || *kms == "" {
			fmt.Fprint(stderr, keysUsage)
			return 2
		}
		var key []byte
		if *fromStdin {
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				fmt.Fprintf(stderr, "tokenrelay keys wrap: read the key: %v\n", err)
				return 1
			}
			if key, err = seal.ParseKey(line); err != nil {
				fmt.Fprintf(stderr, "tokenrelay keys wrap: %v\n", err)
				return 1
			}
		}
		wrapped, kid, err := masterkey.Wrap(ctx, *kms, key)
		if err != nil {
			fmt.Fprintf(stderr, "tokenrelay keys wrap: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "key id %s; set %s to:\n", kid, config.EnvSecretKeyWrapped)
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(wrapped))
		return 0
	case "status", "reseal":
	default:
		fmt.Fprint(stderr, keysUsage)
		return 2
	}

	cfgPath := fs.String("config", "", "configuration file (default: $"+config.EnvConfig+")")
	batch := fs.Int("batch", 500, "credentials read per round trip")
	every := fs.Int64("every", 1000, "print progress every N credentials")
	if fs.Parse(rest) != nil || fs.NArg() > 0 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	st, closeStore, err := openStore(ctx, *cfgPath, env)
	if err != nil {
		fmt.Fprintf(stderr, "tokenrelay keys %s: %v\n", cmd, err)
		return 1
	}
	defer closeStore()

	if cmd == "status" {
		p, err := st.Reseal(ctx, store.ResealOptions{Batch: *batch, DryRun: true})
		if err != nil {
			fmt.Fprintf(stderr, "tokenrelay keys status: %v\n", err)
			return 1
		}
		printStatus(stdout, st.KeyIDs(), p)
		return 0
	}
	fmt.Fprintf(stdout, "re-sealing under key %s (keys held: %s)\n", st.CurrentKeyID(), strings.Join(st.KeyIDs(), ", "))
	p, err := reseal.Run(ctx, st, reseal.Options{Batch: *batch, LogEvery: *every, Progress: func(pass int, p store.ResealProgress) {
		fmt.Fprintf(stdout, "pass %d: %d/%d credentials scanned, %d values, %d resealed, %d conflicts, %d failed, about %d credentials remaining\n",
			pass, p.Scanned, p.Total, p.Values, p.Resealed, p.Conflicts, p.Failed, p.Remaining())
	}})
	if err != nil {
		fmt.Fprintf(stderr, "tokenrelay keys reseal: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "done: all %d sealed values are under key %s; previous keys may be dropped\n", p.Values, st.CurrentKeyID())
	return 0
}

// printStatus prints how many values each key sealed.
func printStatus(w io.Writer, held []string, p store.ResealProgress) {
	fmt.Fprintf(w, "%d credentials, %d sealed values\n", p.Scanned, p.Values)
	kids := make([]string, 0, len(p.ByKey))
	for kid := range p.ByKey {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	for _, kid := range kids {
		role := "not held: these values cannot be opened"
		for i, h := range held {
			if h == kid {
				role = map[bool]string{true: "current", false: "previous"}[i == 0]
			}
		}
		if kid == "" {
			kid, role = "(malformed)", "not sealed values"
		}
		fmt.Fprintf(w, "  key %s (%s): %d values\n", kid, role, p.ByKey[kid])
	}
	fmt.Fprintf(w, "to re-seal: %d; cannot be opened: %d\n", p.Stale, p.Failed)
}

// openStore loads the configuration as the worker does, with env as the
// environment, and opens the store on Redis.
func openStore(ctx context.Context, path string, env func(string) (string, bool)) (*store.Store, func(), error) {
	path = config.Path(path, env)
	if path == "" {
		return nil, nil, config.ErrNoPath
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := config.Parse(data, env)
	if err != nil {
		return nil, nil, err
	}
	st, rdb, err := app.OpenStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = rdb.Close() }, nil
}
