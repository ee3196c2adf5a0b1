package budget

import (
	"time"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
)

// LimitOf is the window of a vendor instance's accounts, from its
// configuration: rate_limit.limit per rate_limit.per, counted as
// rate_limit.window says (empty: as the vendor's kind counts, fixed for
// healthsync, sliding for the others). A vendor without a limit of ours
// gets the zero Limit.
func LimitOf(v config.Vendor) Limit {
	lim := Limit{Requests: v.RateLimit.Limit, Per: time.Duration(v.RateLimit.Per), Kind: Sliding,
		Slack: time.Duration(v.RateLimit.Slack)}
	spec, _ := v.Spec()
	if v.RateLimit.Window == "fixed" || (v.RateLimit.Window == "" && spec.FixedWindow) {
		lim.Kind = Fixed
	}
	return lim
}

// AccountOf names the budget a request of credential at vendor v spends:
// the credential's own for vendors that limit each OAuth client (Halaxy),
// the vendor instance's for the others.
func AccountOf(v config.Vendor, credential string) string {
	if PerClient(string(v.Kind)) {
		return Account(v.Name, credential)
	}
	return Account(v.Name, "")
}

// PerClient says whether a vendor kind limits each OAuth client (each
// credential) rather than the whole account: Halaxy does ("per OAuth
// client"); HealthSync limits the plan, and the others are taken to limit
// the account. The kind's description (vendors/kind) says which.
func PerClient(kindName string) bool {
	s, ok := kind.Lookup(kindName)
	return ok && s.BudgetPerClient
}
