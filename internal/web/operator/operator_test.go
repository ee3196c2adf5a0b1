package operator_test

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
)

const adminToken = "op-token-0123456789"

// bundle is one test's operator pages on a store of its own.
type bundle struct {
	srv   *httptest.Server
	store *store.Store
	logs  *testenv.Buffer
	calls *calls
	now   time.Time
}

// calls records what the actions were asked to do.
type calls struct {
	mu  sync.Mutex
	got []string
	// secrets are the new secrets Enable was given, revealed.
	secrets []string
	fail    error
}

func (c *calls) add(s string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, s)
	return c.fail
}

func (c *calls) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

type fakeActions struct{ c *calls }

func (f fakeActions) Revoke(_ context.Context, id, reason string) error {
	return f.c.add("revoke " + id + " " + reason)
}
func (f fakeActions) Enable(_ context.Context, id string, s secret.Value) error {
	f.c.mu.Lock()
	f.c.secrets = append(f.c.secrets, s.Reveal())
	f.c.mu.Unlock()
	return f.c.add("enable " + id)
}
func (f fakeActions) RotateNow(_ context.Context, id string) error { return f.c.add("rotate " + id) }
func (f fakeActions) RetryNow(_ context.Context, id string) error  { return f.c.add("retry " + id) }

type fakeEvents []events.Envelope

func (f fakeEvents) Recent(_ context.Context, n int) ([]events.Envelope, error) {
	return f[:min(n, len(f))], nil
}

type fakeBudgets []operator.Budget

func (f fakeBudgets) Budgets(context.Context) ([]operator.Budget, error) { return f, nil }

func setup(t *testing.T, tweak func(*operator.Deps)) *bundle {
	t.Helper()
	now := storetest.T0
	st, _ := storetest.New(t, func() time.Time { return now })
	b := &bundle{store: st, logs: &testenv.Buffer{}, calls: &calls{}, now: now}
	acts := fakeActions{b.calls}
	d := operator.Deps{
		Token: secret.New(adminToken), Credentials: st,
		Revoke: acts, Enable: acts, Rotate: acts, Retry: acts,
		Logger: zerolog.New(b.logs), Clock: func() time.Time { return now }, PageSize: 50,
	}
	if tweak != nil {
		tweak(&d)
	}
	mux := http.NewServeMux()
	mux.Handle(operator.Prefix, operator.Handler(d))
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

// add stores a credential; its client secret is "secret-<id>".
func (b *bundle) add(t *testing.T, id, vendor string) {
	t.Helper()
	_, err := b.store.Upsert(context.Background(), store.NewCredential{ID: id, Vendor: vendor, ClientID: "cid-" + id,
		Keys: store.Keys{ClientSecret: secret.New("secret-" + id)}})
	require.NoError(t, err)
}

func (b *bundle) revoke(t *testing.T, id string) {
	t.Helper()
	c, err := b.store.Get(context.Background(), id)
	require.NoError(t, err)
	ev, err := events.New(events.TypeKeyRevoked, c.Vendor, id, b.now, events.KeyRevoked{Vendor: c.Vendor, Credential: id, Reason: "revoked_by_vendor"})
	require.NoError(t, err)
	require.NoError(t, b.store.Revoke(context.Background(), id, c.Generation, "revoked_by_vendor", "invalid_client", ev))
}

// browser returns a client with a cookie jar, signed in through the form.
func (b *bundle) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(b.srv.URL+"/ui/login", url.Values{"token": {adminToken}, "next": {"/ui/credentials"}})
	require.NoError(t, err)
	body := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "/ui/credentials", resp.Request.URL.Path, "sign-in should land on the credentials")
	return c
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	body := readAll(t, resp)
	return resp.StatusCode, body
}

var (
	rowID = regexp.MustCompile(`<tr id="cred-([^"]+)"`)
	csrf  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	next  = regexp.MustCompile(`<a href="([^"]+)" rel="next">`)
)

func TestSignInIsRequiredAndTheTokenIsChecked(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := noRedirect.Get(b.srv.URL + "/ui/credentials?vendor=x")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/login?next="+url.QueryEscape("/ui/credentials?vendor=x"), resp.Header.Get("Location"))

	resp, err = noRedirect.PostForm(b.srv.URL+"/ui/login", url.Values{"token": {"wrong"}})
	require.NoError(t, err)
	body := readAll(t, resp)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "not the admin token")
	require.Empty(t, resp.Cookies(), "a refused sign-in sets no cookie")

	resp, err = noRedirect.PostForm(b.srv.URL+"/ui/login", url.Values{"token": {adminToken}, "next": {"https://evil.example/"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "/ui/credentials", resp.Header.Get("Location"), "a sign-in never redirects off the pages")
	require.Len(t, resp.Cookies(), 1)
	cookie := resp.Cookies()[0]
	require.Equal(t, websession.CookieName, cookie.Name, "the session the queue dashboard accepts too")
	require.Equal(t, "/", cookie.Path, "one sign-in covers /ui/ and /asynqmon/")
	require.True(t, cookie.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	require.NotContains(t, cookie.Value, adminToken)

	// A forged cookie is refused; a bearer header is accepted.
	req, _ := http.NewRequest(http.MethodGet, b.srv.URL+"/ui/credentials", nil)
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: "99999999999.abc.def"})
	resp, err = noRedirect.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	req, _ = http.NewRequest(http.MethodGet, b.srv.URL+"/ui/credentials", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err = noRedirect.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, b.logs.String(), `"audit":"login"`)
	require.NotContains(t, b.logs.String(), adminToken)
}

func TestSignOutNeedsTheFormAndEndsTheSession(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.browser(t)
	status, page := get(t, c, b.srv.URL+"/ui/credentials")
	require.Equal(t, http.StatusOK, status)
	token := csrf.FindStringSubmatch(page)[1]

	resp, err := c.PostForm(b.srv.URL+"/ui/logout", url.Values{"csrf": {"forged"}})
	require.NoError(t, err)
	readAll(t, resp)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a sign-out from another site is refused")
	status, _ = get(t, c, b.srv.URL+"/ui/credentials")
	require.Equal(t, http.StatusOK, status, "still signed in")

	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = c.PostForm(b.srv.URL+"/ui/logout", url.Values{"csrf": {token}})
	require.NoError(t, err)
	readAll(t, resp)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/ui/login", resp.Header.Get("Location"))
	require.Len(t, resp.Cookies(), 1)
	require.Equal(t, "/", resp.Cookies()[0].Path, "cleared where it was set")
	require.Negative(t, resp.Cookies()[0].MaxAge)
	resp, err = c.Get(b.srv.URL + "/ui/credentials")
	require.NoError(t, err)
	readAll(t, resp)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "signed out")
}

func TestPagesAreOffWithoutAnAdminToken(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *operator.Deps) { d.Token = secret.Value{} })
	status, body := get(t, http.DefaultClient, b.srv.URL+"/ui/credentials")
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, "http.admin_token")
}

func TestCredentialsArePaginatedAndFilteredOnTheServer(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var want []string
	for i := range 120 {
		vendor := "halaxy-au"
		if i%3 == 0 {
			vendor = "portal"
		}
		id := fmt.Sprintf("c-%03d", i)
		b.add(t, id, vendor)
		want = append(want, id)
	}
	for _, id := range []string{"c-003", "c-004", "c-010"} {
		b.revoke(t, id)
	}
	c := b.browser(t)

	// Every credential once, in order, 50 a page.
	var seen []string
	u := b.srv.URL + "/ui/credentials?refresh=0"
	pages := 0
	for u != "" {
		status, body := get(t, c, u)
		require.Equal(t, http.StatusOK, status)
		rows := rowID.FindAllStringSubmatch(body, -1)
		require.LessOrEqual(t, len(rows), 50)
		for _, m := range rows {
			seen = append(seen, m[1])
		}
		require.NotContains(t, body, "secret-c-", "a page never shows a secret")
		require.NotContains(t, body, "http-equiv=\"refresh\"", "refresh=0 turns the reload off")
		pages++
		u = ""
		if m := next.FindStringSubmatch(body); m != nil {
			u = b.srv.URL + strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	require.Equal(t, want, seen)
	require.Equal(t, 3, pages)

	// Filters: vendor and state together.
	status, body := get(t, c, b.srv.URL+"/ui/credentials?vendor=portal&state=revoked")
	require.Equal(t, http.StatusOK, status)
	var got []string
	for _, m := range rowID.FindAllStringSubmatch(body, -1) {
		got = append(got, m[1])
	}
	require.Equal(t, []string{"c-003"}, got)
	require.Contains(t, body, "1 of 120 credentials")
	require.Contains(t, body, `http-equiv="refresh" content="5"`)

	// The previous page of the second page is the first.
	_, body = get(t, c, b.srv.URL+"/ui/credentials?before=c-060&state=active")
	ids := rowID.FindAllStringSubmatch(body, -1)
	require.Len(t, ids, 50)
	require.Equal(t, "c-009", ids[0][1], "the 50 active credentials before c-060 (c-003, c-004, c-010 are revoked)")
	require.Equal(t, "c-059", ids[49][1])
	require.NotContains(t, body, `id="cred-c-010"`)
	require.Contains(t, body, `rel="prev"`)

	// An id prefix.
	_, body = get(t, c, b.srv.URL+"/ui/credentials?q=c-11")
	require.Len(t, rowID.FindAllStringSubmatch(body, -1), 10)
}

func TestCredentialShowsStateBarsAndLastErrorWithoutSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.add(t, "clinic-1", "halaxy-au")
	b.revoke(t, "clinic-1")
	c := b.browser(t)
	status, body := get(t, c, b.srv.URL+"/ui/credentials/clinic-1")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `id="state">revoked<`)
	require.Contains(t, body, "invalid_client")
	require.Contains(t, body, `class="button action-enable"`, "a revoked credential can be re-enabled")
	require.NotContains(t, body, "action-revoke")
	require.NotContains(t, body, "secret-clinic-1")
	require.NotContains(t, body, "cid-clinic-1", "the client id shows as a fingerprint")

	status, _ = get(t, c, b.srv.URL+"/ui/credentials/nope")
	require.Equal(t, http.StatusNotFound, status)
}

// TestFooterShowsTheBuild: every page of a signed-in operator names the
// build in its footer; the sign-in page does not.
func TestFooterShowsTheBuild(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var want strings.Builder // as the page escapes it
	require.NoError(t, template.Must(template.New("").Parse("{{.}}")).Execute(&want, buildinfo.Read().String()))
	footer := regexp.MustCompile(`<p class="muted" style="margin-top:18px">[^<]*</p>`)

	status, body := get(t, http.DefaultClient, b.srv.URL+"/ui/login")
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, footer.FindString(body), want.String(), "the sign-in page")

	c := b.browser(t)
	for _, page := range []string{"/ui/credentials", "/ui/budgets", "/ui/events"} {
		status, body := get(t, c, b.srv.URL+page)
		require.Equal(t, http.StatusOK, status, page)
		require.Contains(t, footer.FindString(body), " · "+want.String(), page)
	}
}

func TestActionsNeedConfirmationAndCSRFAndAreAudited(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.add(t, "clinic-1", "halaxy-au")
	c := b.browser(t)

	status, page := get(t, c, b.srv.URL+"/ui/credentials/clinic-1/revoke")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, page, "Revoke clinic-1?")
	token := csrf.FindStringSubmatch(page)[1]
	post := func(action string, form url.Values) (int, string) {
		resp, err := c.PostForm(b.srv.URL+"/ui/credentials/clinic-1/"+action, form)
		require.NoError(t, err)
		return resp.StatusCode, readAll(t, resp)
	}

	// No CSRF token, or another session's: refused, nothing done.
	status, _ = post("revoke", url.Values{"confirm": {"yes"}})
	require.Equal(t, http.StatusForbidden, status)
	status, _ = post("revoke", url.Values{"confirm": {"yes"}, "csrf": {"forged"}})
	require.Equal(t, http.StatusForbidden, status)
	// Not confirmed: the confirmation page again, nothing done.
	status, body := post("revoke", url.Values{"csrf": {token}, "reason": {"clinic left"}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "Tick the box")
	require.Contains(t, body, `value="clinic left"`, "the reason typed is kept")
	require.Empty(t, b.calls.list())

	// Confirmed: done once, audited, and the credential page says so.
	status, body = post("revoke", url.Values{"csrf": {token}, "confirm": {"yes"}, "reason": {"clinic left"}})
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "key.revoked was published")
	require.Equal(t, []string{"revoke clinic-1 clinic left"}, b.calls.list())
	require.Regexp(t, `"audit":"revoke","who":"operator".*"credential":"clinic-1".*"reason":"clinic left".*"ok":true`, b.logs.String())

	for _, action := range []string{"retry", "rotate"} {
		status, _ = post(action, url.Values{"csrf": {token}, "confirm": {"yes"}})
		require.Equal(t, http.StatusOK, status, action)
	}
	require.Equal(t, []string{"revoke clinic-1 clinic left", "retry clinic-1", "rotate clinic-1"}, b.calls.list())

	// A failing action shows why on the confirmation page and is logged.
	b.calls.fail = fmt.Errorf("the vendor is down")
	status, body = post("retry", url.Values{"csrf": {token}, "confirm": {"yes"}})
	require.Equal(t, http.StatusBadGateway, status)
	require.Contains(t, body, "Retry now failed: the vendor is down")
	require.Regexp(t, `"audit":"retry".*"ok":false`, b.logs.String())
}

func TestReEnableTakesANewSecretThatIsNeverShownOrLogged(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.add(t, "clinic-1", "halaxy-au")
	b.revoke(t, "clinic-1")
	c := b.browser(t)

	_, page := get(t, c, b.srv.URL+"/ui/credentials/clinic-1/enable")
	require.Contains(t, page, `type="password" name="secret"`)
	token := csrf.FindStringSubmatch(page)[1]
	status, _ := get(t, c, b.srv.URL+"/ui/credentials/clinic-1/revoke")
	require.Equal(t, http.StatusConflict, status, "a revoked credential cannot be revoked again")

	const newSecret = "brand-new-secret-XYZ"
	resp, err := c.PostForm(b.srv.URL+"/ui/credentials/clinic-1/enable", url.Values{"csrf": {token}, "confirm": {"yes"}, "secret": {newSecret}})
	require.NoError(t, err)
	body := readAll(t, resp)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, []string{"enable clinic-1"}, b.calls.list())
	require.Equal(t, []string{newSecret}, b.calls.secrets)
	require.NotContains(t, body, newSecret)
	require.NotContains(t, b.logs.String(), newSecret)
	require.Regexp(t, `"audit":"enable".*"new_secret":true`, b.logs.String())

	// A refused re-enable shows the form again without the secret typed.
	b.calls.fail = fmt.Errorf("client_secret: too short")
	resp, err = c.PostForm(b.srv.URL+"/ui/credentials/clinic-1/enable", url.Values{"csrf": {token}, "confirm": {"yes"}, "secret": {newSecret}})
	require.NoError(t, err)
	body = readAll(t, resp)
	require.Contains(t, body, "client_secret: too short")
	require.NotContains(t, body, newSecret)
}

func TestActionsNotWiredAreNotOffered(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *operator.Deps) { d.Rotate = nil })
	b.add(t, "clinic-1", "halaxy-au")
	c := b.browser(t)
	_, body := get(t, c, b.srv.URL+"/ui/credentials/clinic-1")
	require.NotContains(t, body, "action-rotate")
	require.Contains(t, body, "action-retry")
	status, _ := get(t, c, b.srv.URL+"/ui/credentials/clinic-1/rotate")
	require.Equal(t, http.StatusConflict, status)
}

func TestEventsShowOnlyKnownFields(t *testing.T) {
	t.Parallel()
	at := storetest.T0
	renewed, err := events.New(events.TypeTokenRenewed, "halaxy-au", "clinic-1", at, events.TokenRenewed{
		Vendor: "halaxy-au", Credential: "clinic-1", Generation: 7, Fingerprint: "fp-abc"})
	require.NoError(t, err)
	odd, err := events.New(events.TypeKeyRevoked, "portal", "patient-2", at, map[string]any{
		"vendor": "portal", "credential": "patient-2", "reason": "revoked_by_vendor", "access_token": "leaked-token"})
	require.NoError(t, err)
	b := setup(t, func(d *operator.Deps) { d.Events = fakeEvents{odd, renewed} })
	c := b.browser(t)

	status, body := get(t, c, b.srv.URL+"/ui/events")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "token.renewed.halaxy-au.clinic-1")
	require.Contains(t, body, "<b>generation</b> 7")
	require.Contains(t, body, "<b>reason</b> revoked_by_vendor")
	require.NotContains(t, body, "leaked-token", "fields the pages do not know are left out")
	require.Less(t, strings.Index(body, "key.revoked.portal"), strings.Index(body, "token.renewed.halaxy-au"), "newest first")

	_, body = get(t, c, b.srv.URL+"/ui/events?type=key.revoked")
	require.Contains(t, body, "key.revoked.portal.patient-2")
	require.NotContains(t, body, "token.renewed.halaxy-au.clinic-1")
}

func TestBudgetsShowUseAndPause(t *testing.T) {
	t.Parallel()
	none := setup(t, nil)
	_, body := get(t, none.browser(t), none.srv.URL+"/ui/budgets")
	require.Contains(t, body, "No budgets configured")

	b := setup(t, func(d *operator.Deps) {
		d.Budgets = fakeBudgets{
			{Account: "halaxy-au", Limit: 500, Per: time.Minute, Used: 450, Remaining: 50},
			{Account: "healthsync", Limit: 1000, Per: time.Hour, Used: 1000, PausedUntil: storetest.T0.Add(30 * time.Second)},
		}
	})
	_, body = get(t, b.browser(t), b.srv.URL+"/ui/budgets")
	require.Regexp(t, `(?s)id="budget-halaxy-au">.*90%.*450.*500.*50.*1m.*not paused`, body)
	require.Regexp(t, `(?s)id="budget-healthsync">.*100%.*1h.*in 30s\) after a 429`, body)
}

type healthsyncOnly struct{ fakeActions }

func (healthsyncOnly) CanRotate(vendor string) bool { return vendor == "healthsync" }

func TestRotateIsOfferedOnlyWhereTheVendorRotates(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *operator.Deps) { d.Rotate = healthsyncOnly{d.Rotate.(fakeActions)} })
	b.add(t, "clinic-1", "halaxy-au")
	b.add(t, "hs-1", "healthsync")
	c := b.browser(t)
	_, body := get(t, c, b.srv.URL+"/ui/credentials")
	require.Regexp(t, `(?s)id="cred-clinic-1".*action-retry.*action-revoke.*id="cred-hs-1"`, body)
	require.NotRegexp(t, `(?s)id="cred-clinic-1".*action-rotate.*id="cred-hs-1"`, body)
	require.Regexp(t, `(?s)id="cred-hs-1".*action-rotate`, body)
	status, _ := get(t, c, b.srv.URL+"/ui/credentials/clinic-1/rotate")
	require.Equal(t, http.StatusConflict, status)
}

// slowStore is a store whose every scan takes 3 seconds of the test's clock.
type slowStore struct {
	*store.Store
	now *time.Time
}

func (s slowStore) Scan(ctx context.Context, fn func(store.Summary) error) error {
	*s.now = s.now.Add(3 * time.Second)
	return s.Store.Scan(ctx, fn)
}

// A store that takes long to read is not read again every few seconds by
// an open page.
func TestAPageOfASlowStoreReloadsLessOften(t *testing.T) {
	t.Parallel()
	now := storetest.T0
	b := setup(t, func(d *operator.Deps) {
		d.Credentials = slowStore{d.Credentials.(*store.Store), &now}
		d.Clock = func() time.Time { return now }
	})
	c := b.browser(t)
	_, body := get(t, c, b.srv.URL+"/ui/credentials")
	require.Contains(t, body, `http-equiv="refresh" content="30"`)
	_, body = get(t, c, b.srv.URL+"/ui/credentials?refresh=2")
	require.Contains(t, body, `http-equiv="refresh" content="2"`, "an explicit period is kept")
}
