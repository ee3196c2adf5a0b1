package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/secret"
)

// importChunk is how many lines go in one import request, so that the
// progress bar moves and a huge file is not one request.
const importChunk = 500

const credentialsUsage = `usage: tokenrelay credentials <command> [flags]

Commands (talk to a worker's admin API: TOKENRELAY_ADMIN_URL, default
http://127.0.0.1:8080, and TOKENRELAY_ADMIN_TOKEN):
  list    [-vendor V] [-state S] [-json]     credentials, without secrets
  add     [-f FILE]                          one credential as JSON (stdin by default):
                                             {"id","vendor","client_id","client_secret","private_key","key_id","api_key","refresh_token"}
  import  FILE|-                             JSON lines, one credential each; bad lines are reported by number
  rotate  ID                                 rotate the key now (key.rotated, then key.revoked reason rotated)
  revoke  ID [-reason TEXT]                  revoke now, at the vendor too where it can (key.revoked, reason revoked_by_operator)
  enable  ID [-f FILE]                       re-enable, with new keys from FILE ("-" for stdin) if given
`

// credentials runs "tokenrelay credentials ...".
func credentials(ctx context.Context, args []string, env func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, credentialsUsage)
		return 2
	}
	c, ok := adminClient("credentials", env, stderr)
	if !ok {
		return 2
	}

	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("tokenrelay credentials "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch cmd {
	case "list":
		vendor := fs.String("vendor", "", "only this vendor")
		state := fs.String("state", "", "only this state (active, failing, expired, revoked, refreshing)")
		asJSON := fs.Bool("json", false, "print JSON")
		if fs.Parse(rest) != nil {
			return 2
		}
		err = list(ctx, c, *vendor, *state, *asJSON, stdout)
	case "add":
		file := fs.String("f", "-", "JSON file of the credential (- for stdin)")
		if fs.Parse(rest) != nil {
			return 2
		}
		err = add(ctx, c, *file, stdin, stdout)
	case "import":
		if fs.Parse(rest) != nil || fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: tokenrelay credentials import FILE|-")
			return 2
		}
		var failed bool
		failed, err = importFile(ctx, c, fs.Arg(0), stdin, stdout, stderr)
		if err == nil && failed {
			return 1
		}
	case "rotate":
		id, ok := idArg(fs, rest, stderr)
		if !ok {
			return 2
		}
		if err = c.Rotate(ctx, id); err == nil {
			fmt.Fprintf(stdout, "%s: rotation queued (watch for key.rotated and key.revoked)\n", id)
		}
	case "revoke":
		reason := fs.String("reason", "", "why (kept in the event and the log)")
		id, ok := idArg(fs, rest, stderr)
		if !ok {
			return 2
		}
		if err = c.Revoke(ctx, id, *reason); err == nil {
			fmt.Fprintf(stdout, "%s revoked\n", id)
		}
	case "enable":
		file := fs.String("f", "", "JSON file of new keys (- for stdin): {\"client_secret\",\"private_key\",\"key_id\",\"api_key\",\"refresh_token\",\"client_id\"}")
		id, ok := idArg(fs, rest, stderr)
		if !ok {
			return 2
		}
		var in adminclient.EnableInput
		if *file != "" {
			if err = readJSON(*file, stdin, &in); err != nil {
				break
			}
		}
		if err = c.Enable(ctx, id, in); err == nil {
			fmt.Fprintf(stdout, "%s enabled\n", id)
		}
	default:
		fmt.Fprint(stderr, credentialsUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "tokenrelay credentials %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// idArg parses "ID [flags]" or "[flags] ID".
func idArg(fs *flag.FlagSet, args []string, stderr io.Writer) (string, bool) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = append(args[1:], args[0])
	}
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: %s ID [flags]\n", fs.Name())
		return "", false
	}
	return fs.Arg(0), true
}

func open(name string, stdin io.Reader) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(stdin), nil
	}
	return os.Open(name)
}

func readJSON(name string, stdin io.Reader, v any) error {
	f, err := open(name, stdin)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("the input is not one JSON object of the expected fields")
	}
	return nil
}

func list(ctx context.Context, c *adminclient.Client, vendor, state string, asJSON bool, out io.Writer) error {
	creds, err := c.List(ctx, vendor, state)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(creds)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVENDOR\tSTATE\tGEN\tEXPIRES\tNEXT REFRESH\tFAILURES\tLAST ERROR\tCLIENT ID")
	now := time.Now()
	for _, v := range creds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", v.ID, v.Vendor, v.State, v.Generation,
			relative(now, v.ExpiresAt), relative(now, v.NextRefresh), v.Failures, v.LastErrorClass, v.ClientIDFingerprint)
	}
	return tw.Flush()
}

func relative(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d < 0 {
		return (-d).String() + " ago"
	}
	return "in " + d.String()
}

func add(ctx context.Context, c *adminclient.Client, file string, stdin io.Reader, out io.Writer) error {
	var in adminclient.CredentialInput
	if err := readJSON(file, stdin, &in); err != nil {
		return err
	}
	res, err := c.Add(ctx, in)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s %s\n", res.ID, res.Result)
	return nil
}

// importFile sends a JSON-lines file in chunks, with a progress bar on
// stderr, and prints a summary with every failed line. It reports whether
// any line failed.
func importFile(ctx context.Context, c *adminclient.Client, name string, stdin io.Reader, out, progress io.Writer) (bool, error) {
	f, err := open(name, stdin)
	if err != nil {
		return false, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return false, err
	}
	total := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		total++
	}
	var sum adminclient.ImportResult
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), adminclient.MaxBody)
	var chunk bytes.Buffer
	send := func() error {
		if chunk.Len() == 0 {
			return nil
		}
		res, err := c.Import(ctx, chunk.Bytes())
		if err != nil {
			return fmt.Errorf("after line %d: %w", sum.Lines, err)
		}
		for _, fl := range res.Failed {
			fl.Line += sum.Lines
			sum.Failed = append(sum.Failed, fl)
		}
		sum.Lines += res.Lines
		sum.Created += res.Created
		sum.Updated += res.Updated
		sum.Unchanged += res.Unchanged
		chunk.Reset()
		drawProgress(progress, sum.Lines, total, len(sum.Failed))
		return nil
	}
	lines := 0
	firstLine := map[string]int{} // id -> the line it first appeared on
	var dups []adminclient.ImportFailed
	for sc.Scan() {
		// A duplicate id is refused here, across chunks too (the server
		// sees one chunk at a time): its line is sent empty, so the line
		// numbers stay right.
		var head struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &head) == nil && head.ID != "" {
			if first, dup := firstLine[head.ID]; dup {
				dups = append(dups, adminclient.ImportFailed{Line: lines + 1, ID: head.ID, Error: fmt.Sprintf("duplicate id (also on line %d)", first)})
				chunk.WriteByte('\n')
				if lines++; lines%importChunk == 0 {
					if err := send(); err != nil {
						return false, err
					}
				}
				continue
			}
			firstLine[head.ID] = lines + 1
		}
		chunk.Write(sc.Bytes())
		chunk.WriteByte('\n')
		if lines++; lines%importChunk == 0 {
			if err := send(); err != nil {
				return false, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("reading line %d: %w", lines+1, err)
	}
	if err := send(); err != nil {
		return false, err
	}
	fmt.Fprintln(progress)
	sum.Failed = append(sum.Failed, dups...)
	slices.SortStableFunc(sum.Failed, func(a, b adminclient.ImportFailed) int { return a.Line - b.Line })
	fmt.Fprintf(out, "%d lines: %d created, %d updated, %d unchanged, %d failed\n",
		sum.Lines, sum.Created, sum.Updated, sum.Unchanged, len(sum.Failed))
	for _, fl := range sum.Failed {
		id := ""
		if fl.ID != "" {
			id = " (" + fl.ID + ")"
		}
		fmt.Fprintf(out, "  line %d%s: %s\n", fl.Line, id, fl.Error)
	}
	return len(sum.Failed) > 0, nil
}

func drawProgress(w io.Writer, done, total, failed int) {
	const width = 30
	filled := width
	if total > 0 {
		filled = min(width, done*width/total)
	}
	fmt.Fprintf(w, "\rimporting [%s%s] %d/%d lines, %d failed", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total, failed)
}

// adminClient is the worker's admin API as TOKENRELAY_ADMIN_URL (default
// http://127.0.0.1:8080) and TOKENRELAY_ADMIN_TOKEN give it; false, after
// saying why on stderr, when the token is not set.
func adminClient(command string, env func(string) (string, bool), stderr io.Writer) (*adminclient.Client, bool) {
	c := &adminclient.Client{BaseURL: "http://127.0.0.1:8080"}
	if u, ok := env("TOKENRELAY_ADMIN_URL"); ok && u != "" {
		c.BaseURL = u
	}
	tok, ok := env("TOKENRELAY_ADMIN_TOKEN")
	if !ok || tok == "" {
		fmt.Fprintf(stderr, "tokenrelay %s: TOKENRELAY_ADMIN_TOKEN is not set (the worker's http.admin_token)\n", command)
		return nil, false
	}
	c.Token = secret.New(tok)
	return c, true
}
