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
