package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/jobs"
)

const syncUsage = `usage: tokenrelay sync COMMAND ...   (TOKENRELAY_ADMIN_URL, TOKENRELAY_ADMIN_TOKEN)
  start -credential C -resource R [-query 'k=v&k2=v2'] [-mode full|incremental] [-id ID] [-vendor V] [-batch B] [-follow]
                       start a sync (pages of sync.page.<vendor>.<credential>, then sync.completed or
                       sync.failed); -follow shows its progress until it ends
  status ID -vendor V -credential C [-once] [-every D] [-json]
                       a sync's pages, resources, rate and estimated finish; follows it live with a
                       progress bar until it ends (-once: print once)
  cancel ID -vendor V -credential C
                       stop it after the page in flight (sync.failed, class cancelled)
A sync belongs to one credential: -vendor and -credential name the one it is of.
`

// syncCmd runs "tokenrelay sync ...".
func syncCmd(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	sc, ok := newScopedCommand("sync", syncUsage, args, env, stderr)
	if !ok {
		return 2
	}
	c, cmd, rest, fs, vendor, credential, owned := sc.client, sc.cmd, sc.rest, sc.fs, sc.vendor, sc.credential, sc.owned
	var err error
	switch cmd {
	case "start":
		resource := fs.String("resource", "", "the search path, e.g. Patient (required)")
		query := fs.String("query", "", "the search's parameters, e.g. '_count=100'")
		mode := fs.String("mode", jobs.SyncFull, "full or incremental")
		id := fs.String("id", "", "the sync's id (default: a new one)")
		batchID := fs.String("batch", "", "the batch its pages share the budget in (default: one of its own)")
		followIt := fs.Bool("follow", false, "show the sync's progress until it ends")
		if fs.Parse(rest) != nil || fs.NArg() != 0 {
			return 2
		}
		q, perr := url.ParseQuery(*query)
		if perr != nil {
			fmt.Fprintf(stderr, "tokenrelay sync start: -query: %v\n", perr)
			return 2
		}
		s := adminclient.SyncStart{ID: *id, Vendor: *vendor, Credential: *credential, Resource: *resource,
			Query: q, Mode: *mode, Batch: *batchID}
		var started string
		if started, err = c.StartSync(ctx, s); err == nil {
			fmt.Fprintf(stdout, "sync %s started\n", started)
			if *followIt {
				if *vendor == "" {
					fmt.Fprintln(stderr, "tokenrelay sync start: -follow needs -vendor")
					return 2
				}
				err = follow(ctx, false, time.Second, stdout, func() (string, bool, error) {
					_, line, done, err := lookSync(ctx, c, *vendor, *credential, started)
					return line, done, err
				})
			}
		}
	case "status":
		var code int
		if code, err = sc.status(ctx, stdout, stderr, func(id string) (any, string, bool, error) {
			return lookSync(ctx, c, *vendor, *credential, id)
		}); code != 0 {
			return code
		}
	case "cancel":
		id, ok := idArg(fs, rest, stderr)
		if !ok || !owned() {
			return 2
		}
		var st adminclient.SyncStatus
		if st, err = c.CancelSync(ctx, *vendor, *credential, id); err == nil {
			fmt.Fprintf(stdout, "%s: cancel requested; it stops after the page in flight\n%s\n", id, syncLine(st))
		}
	default:
		fmt.Fprint(stderr, syncUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokenrelay sync %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// lookSync reads a sync's status, its line and whether it has ended.
func lookSync(ctx context.Context, c *adminclient.Client, vendor, credential, id string) (any, string, bool, error) {
	st, err := c.SyncStatus(ctx, vendor, credential, id)
	return st, syncLine(st), st.State != "running", err
}

// syncLine renders a sync's status on one line, with a progress bar when
// the vendor tells the search's total.
func syncLine(st adminclient.SyncStatus) string {
	const width = 30
	var b strings.Builder
	b.WriteString(st.ID + " ")
	if p := st.Progress(); p >= 0 {
		filled := int(p * width)
		fmt.Fprintf(&b, "[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), st.Resources, st.Total)
	} else {
		fmt.Fprintf(&b, "%d resources", st.Resources)
	}
	fmt.Fprintf(&b, "  pages %d  %s", st.Pages, st.State)
	if r := st.Rate(); r > 0 {
		fmt.Fprintf(&b, "  %.1f/s", r)
	}
	if eta := st.ETA(); eta >= 0 {
		fmt.Fprintf(&b, "  eta %s", eta.Round(time.Second))
	}
	if st.CancelRequested {
		b.WriteString("  cancelling")
	}
	if st.ErrorClass != "" {
		fmt.Fprintf(&b, "  %s: %s", st.ErrorClass, st.Message)
	}
	return b.String()
}
