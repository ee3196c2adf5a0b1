package store

import "github.com/tokenrelay/tokenrelay/secret"

// Scrubber redacts every secret the credential holds, in every spelling
// (see secret.Scrubber), from a text about it: its keys (client secret,
// also inside the HTTP Basic credential it makes with the client id,
// private key, API key, granted refresh token) and its token (access and
// refresh). Fields a read left zero (CurrentToken's) are not covered.
func (c Credential) Scrubber() *secret.Scrubber {
	return secret.NewScrubber(c.ClientSecret, c.PrivateKey, c.APIKey, c.Keys.RefreshToken,
		c.Token.AccessToken, c.Token.RefreshToken).AddBasic(c.ClientID, c.ClientSecret)
}
