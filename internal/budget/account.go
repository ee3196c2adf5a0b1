package budget

// Accounts: what a budget counts, named from a vendor instance and, for a
// vendor that limits each OAuth client, a credential.

import "strings"

// Account names the budget of a vendor instance, or of one of its
// credentials when the vendor limits each OAuth client (see PerClient).
func Account(vendor, credential string) string {
	if credential == "" {
		return vendor
	}
	return vendor + "/" + credential
}

// CredentialOf is the credential of a per-client account of vendor (as
// Account names it), and false for any other account.
func CredentialOf(account, vendor string) (string, bool) {
	id, ok := strings.CutPrefix(account, vendor+"/")
	return id, ok && id != ""
}

// PerClient says whether a vendor kind limits each OAuth client (each
// credential) rather than the whole account: Halaxy does ("per OAuth
// client"); HealthSync limits the plan, and the others are taken to limit
// the account.
func PerClient(kind string) bool { return kind == "halaxy" }
