package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/adminclient"
)

const batchUsage = `usage: tokenrelay batch COMMAND ...   (TOKENRELAY_ADMIN_URL, TOKENRELAY_ADMIN_TOKEN)
  status ID -vendor V -credential C [-once] [-every D] [-json]
                       a batch's counts, rate and estimated finish; follows it live with a
                       progress bar until it ends (-once: print once)
  cancel ID -vendor V -credential C
                       stop what has not run (request.failed, class cancelled)
A batch belongs to one credential: -vendor and -credential name the one it is of.
`

// batch runs "tokenrelay batch ...".
func batch(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	sc, ok := newScopedCommand("batch", batchUsage, args, env, stderr)
	if !ok {
		return 2
	}
	c, cmd, rest, fs, vendor, credential, owned := sc.client, sc.cmd, sc.rest, sc.fs, sc.vendor, sc.credential, sc.owned
	var err error
	switch cmd {
	case "status":
		var code int
		if code, err = sc.status(ctx, stdout, stderr, func(id string) (any, string, bool, error) {
			st, err := c.BatchStatus(ctx, *vendor, *credential, id)
			return st, batchLine(st, time.Now()), st.Finished(), err
		}); code != 0 {
			return code
		}
	case "cancel":
		id, ok := idArg(fs, rest, stderr)
		if !ok || !owned() {
			return 2
		}
		var st adminclient.BatchStatus
		if st, err = c.CancelBatch(ctx, *vendor, *credential, id); err == nil {
			fmt.Fprintf(stdout, "%s cancelled: what has not run is stopped\n%s\n", id, batchLine(st, time.Now()))
		}
	default:
		fmt.Fprint(stderr, batchUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokenrelay batch %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// scopedCommand is a parsed "tokenrelay batch|sync COMMAND": the admin
// client and the flags naming the credential the batch or sync belongs to.
type scopedCommand struct {
	client             *adminclient.Client
	cmd                string
	rest               []string
	fs                 *flag.FlagSet
	vendor, credential *string
	// owned says whether both are given, else prints why not.
	owned func() bool
}

// newScopedCommand reads the command of group from args; false (the usage
// or the problem printed) when there is none or no admin client.
func newScopedCommand(group, usage string, args []string, env func(string) (string, bool), stderr io.Writer) (scopedCommand, bool) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return scopedCommand{}, false
	}
	c, ok := adminClient(group, env, stderr)
	if !ok {
		return scopedCommand{}, false
	}
	sc := scopedCommand{client: c, cmd: args[0], rest: args[1:]}
	sc.fs = flag.NewFlagSet("tokenrelay "+group+" "+sc.cmd, flag.ContinueOnError)
	sc.fs.SetOutput(stderr)
	sc.vendor = sc.fs.String("vendor", "", "the vendor of the credential the "+group+" belongs to (required)")
	sc.credential = sc.fs.String("credential", "", "the credential the "+group+" belongs to (required)")
	sc.owned = func() bool {
		if *sc.vendor == "" || *sc.credential == "" {
			fmt.Fprintf(stderr, "tokenrelay %s %s: -vendor and -credential are required (a %s belongs to one credential)\n", group, sc.cmd, group)
			return false
		}
		return true
	}
	return sc, true
}

// status runs "COMMAND status ID [-once] [-every D] [-json]": look
// returns the status of ID, its line and whether it has ended. It returns
// 2 for a usage error (printed).
func (sc scopedCommand) status(ctx context.Context, stdout, stderr io.Writer,
	look func(id string) (status any, line string, done bool, err error)) (int, error) {
	once := sc.fs.Bool("once", false, "print the status once instead of following it")
	every := sc.fs.Duration("every", time.Second, "how often to look while following")
	asJSON := sc.fs.Bool("json", false, "print JSON (implies -once)")
	id, ok := idArg(sc.fs, sc.rest, stderr)
	if !ok || !sc.owned() {
		return 2, nil
	}
	if *asJSON {
		st, _, _, err := look(id)
		if err != nil {
			return 0, err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return 0, enc.Encode(st)
	}
	return 0, follow(ctx, *once, *every, stdout, func() (string, bool, error) {
		_, line, done, err := look(id)
		return line, done, err
	})
}

// follow prints the line look returns, redrawing it in place until look
// says it is done (or ctx ends), or once.
func follow(ctx context.Context, once bool, every time.Duration, out io.Writer, look func() (line string, done bool, err error)) error {
	for {
		line, done, err := look()
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(out)
				return nil
			}
			return err
		}
		if once {
			fmt.Fprintln(out, line)
			return nil
		}
		fmt.Fprint(out, "\r"+line+"\033[K")
		if done {
			fmt.Fprintln(out)
			return nil
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return nil
		case <-time.After(every):
		}
	}
}

// batchLine renders a batch's status on one line, with a progress bar.
func batchLine(st adminclient.BatchStatus, now time.Time) string {
	const width = 30
	ended := st.Done + st.Failed + st.Cancelled
	filled := width
	if st.Total > 0 {
		filled = int(min(width, ended*width/st.Total))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s%s] %d/%d  queued %d  waiting %d  running %d  done %d  failed %d",
		st.ID, strings.Repeat("#", filled), strings.Repeat(".", width-filled), ended, st.Total,
		st.Queued, st.Waiting, st.Running, st.Done, st.Failed)
	if st.Cancelled > 0 || st.CancelRequested {
		fmt.Fprintf(&b, "  cancelled %d", st.Cancelled)
	}
	if st.Rate > 0 {
		fmt.Fprintf(&b, "  %.1f/s", st.Rate)
	}
	switch {
	case st.Finished():
		b.WriteString("  finished")
	case !st.EstimatedFinish.IsZero():
		fmt.Fprintf(&b, "  eta %s", st.EstimatedFinish.Sub(now).Round(time.Second))
	}
	return b.String()
}
