package store

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// claim.lua returns a claimed credential's fields by position, and the Go
// side reads them by position (claimFields and the c* constants): the two
// lists must be the same, in the same order.
func TestClaimScriptFieldsMatchTheGoSide(t *testing.T) {
	t.Parallel()
	m := regexp.MustCompile(`(?s)local FIELDS = \{(.*?)\}`).FindStringSubmatch(luaClaim)
	require.NotNil(t, m, "claim.lua declares its FIELDS")
	var script []string
	for f := range strings.SplitSeq(m[1], ",") {
		script = append(script, strings.Trim(strings.TrimSpace(f), "'"))
	}
	require.Equal(t, claimFields[:], script, "claim.lua FIELDS and claimFields")
	for pos, name := range map[int]string{
		0: fState, cGen: fGen, cClaimOwner: fClaimOwner, cClaimUntil: fClaimUntil, cPrevState: fPrevState,
		cVendor: fVendor, cClientID: fClientID, cClientSecret: fClientSecret, cRefreshToken: fRefreshToken,
		cExpiresAt: fExpiresAt, cFailures: fFailures, cAccessToken: fAccessToken, cTokenType: fTokenType,
		cIssuedAt: fIssuedAt, cNextRefresh: fNextRefresh,
	} {
		require.Equal(t, name, claimFields[pos], "position %d", pos)
	}
}

// claim_due.lua and reconcile.lua name credential hashes from the prefix
// themselves: they must name them as credKey does.
func TestScriptsNameCredentialHashesAsTheGoSide(t *testing.T) {
	t.Parallel()
	for name, script := range map[string]string{"claim_due.lua": luaClaimDue, "reconcile.lua": luaReconcile} {
		require.Contains(t, script, "prefix .. '"+credKeyInfix+"' .. id", name)
	}
}
