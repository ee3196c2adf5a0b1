package operator_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/devmode"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// chromium finds Debian's chromium (or another Chrome). Without one the
// browser test is skipped on a developer's machine, and fails in CI, so
// that it can never pass there by not running.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI must run the browser test: scripts/ensure-services.sh installs it (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); the browser test is skipped outside CI")
	return ""
}

// browser starts a headless Chromium of the test's own, with the flags a
// machine without outside network needs (no background connections).
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(bctx), "start chromium")
	return bctx
}

var pagesURL = regexp.MustCompile(`operator pages: (http://\S+/ui/) \(admin token (\S+)\)`)

// TestOperatorPagesInChromium drives the pages as an operator would, on a
// running dev pipeline (make run in miniature): sign in, watch a renewal
// appear, revoke a credential through its confirmation page, and see the
// key.revoked event on the events page. With OPERATOR_SCREENSHOTS=DIR it
// also saves screenshots of the pages there (docs/screenshots).
func TestOperatorPagesInChromium(t *testing.T) {
	t.Parallel()
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("the browser test runs a pipeline and a browser: not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bctx := browser(t, ctx)

	shots := os.Getenv("OPERATOR_SCREENSHOTS")
	out := &testenv.Buffer{}
	logFile := filepath.Join(t.TempDir(), "dev.log")
	pipeCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- devmode.Run(pipeCtx, devmode.Options{
			Credentials: 6, TokenLifetime: 3 * time.Second, Out: out, SummaryEvery: 200 * time.Millisecond,
			LogFile: logFile, Lookup: func(string) (string, bool) { return "", false },
			// For screenshots, the demo's vendor outage (clinic-02) and
			// deleted client (clinic-03, after a minute) show too.
			Demo: shots != "",
		})
	}()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("dev mode did not stop within 30s")
		}
	})
	var base, token string
	require.Eventually(t, func() bool {
		m := pagesURL.FindStringSubmatch(out.String())
		if m != nil {
			base, token = m[1], m[2]
		}
		return m != nil
	}, 60*time.Second, 50*time.Millisecond, "make run should print the operator pages' address:\n%s", out.String())

	// Sign in: the pages send a browser without a session to the form.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(base+"credentials?refresh=0"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=token]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), token),
		chromedp.Submit(chromedp.CSS(`input[name=token]`)),
		chromedp.WaitVisible(chromedp.CSS(`#credentials`)),
	))

	// A renewal appears: clinic-01's generation goes up on the page.
	generation := func() (int, error) {
		err := chromedp.Do(bctx,
			chromedp.Navigate(base+"credentials?refresh=0"),
			chromedp.WaitVisible(chromedp.CSS(`#cred-clinic-01`)),
		)
		if err != nil {
			return 0, err
		}
		gen, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(`#cred-clinic-01`), "data-generation"))
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(gen.Value)
	}
	first, err := generation()
	require.NoError(t, err)
	poll(t, 60*time.Second, "clinic-01 should be renewed on the page", func() (bool, error) {
		gen, err := generation()
		return gen > max(first, 1), err
	})

	// Revoke clinic-05: the action, its confirmation, the result.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(base+"credentials/clinic-05?refresh=0"),
		chromedp.Click(chromedp.CSS(`a.action-revoke`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=reason]`), "browser test"),
		chromedp.Click(chromedp.CSS(`#confirm`)),
		chromedp.Click(chromedp.CSS(`#do`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash`)),
	))
	flash, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`.flash`)))
	require.NoError(t, err)
	require.Contains(t, flash, "key.revoked was published")
	state, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#state`)))
	require.NoError(t, err)
	require.Equal(t, "revoked", state)

	// Its event, on the events page, once the relay has moved it to
	// JetStream.
	var reason string
	poll(t, 30*time.Second, "key.revoked for clinic-05 should show on the events page", func() (bool, error) {
		err := chromedp.Do(bctx,
			chromedp.Navigate(base+"events?type=key.revoked&refresh=0"),
			chromedp.WaitVisible(chromedp.CSS(`h1`)),
		)
		if err != nil {
			return false, err
		}
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('tr.event[data-credential="clinic-05"]').length`))
		if err != nil || n == 0 {
			return false, err
		}
		reason, err = chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`tr.event[data-credential="clinic-05"] td.fields`)))
		return err == nil, err
	})
	require.Contains(t, reason, "revoked_by_operator")
	require.Contains(t, reason, "browser test")

	logs, err := os.ReadFile(logFile)
	require.NoError(t, err)
	require.Regexp(t, `"audit":"revoke","who":"operator".*"credential":"clinic-05"`, string(logs), "the action is audited")
	require.NotContains(t, string(logs), token, "the admin token is never logged")

	if shots != "" {
		poll(t, 100*time.Second, "the demo deletes clinic-03's client after a minute", func() (bool, error) {
			err := chromedp.Do(bctx, chromedp.Navigate(base+"credentials?refresh=0"), chromedp.WaitVisible(chromedp.CSS(`#cred-clinic-03`)))
			if err != nil {
				return false, err
			}
			st, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(`#cred-clinic-03`), "data-state"))
			return st.Value == "revoked", err
		})
		screenshots(t, bctx, base, shots)
	}
}

// poll calls cond, in the test's goroutine, until it is true; an error or
// the end of within fails the test.
func poll(t *testing.T, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.After(within)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		require.NoError(t, err, what)
		if ok {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s (waited %s)", what, within)
		case <-tick.C:
		}
	}
}

// screenshots saves the pages as a person sees them.
func screenshots(t *testing.T, bctx context.Context, base, dir string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, page := range map[string]string{
		"credentials.png": "credentials?refresh=0",
		"credential.png":  "credentials/clinic-03?refresh=0",
		"budgets.png":     "budgets?refresh=0",
		"events.png":      "events?refresh=0&n=40",
	} {
		require.NoError(t, chromedp.Do(bctx,
			chromedp.Navigate(base+page),
			chromedp.WaitVisible(chromedp.CSS(`h1`)),
		))
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
	}
}
