package store

import (
	"encoding/json"
	"errors"

	"github.com/tokenrelay/tokenrelay/secret"
)

// keysJSON is how Keys are encoded before sealing: short names, empty ones
// left out, so a plain client secret costs a dozen bytes more than itself.
type keysJSON struct {
	ClientSecret string `json:"cs,omitempty"`
	PrivateKey   string `json:"pk,omitempty"`
	KeyID        string `json:"kid,omitempty"`
	APIKey       string `json:"ak,omitempty"`
}

// encode returns the keys as one secret value; zero when there are none.
func (k Keys) encode() (secret.Value, error) {
	j := keysJSON{ClientSecret: k.ClientSecret.Reveal(), PrivateKey: k.PrivateKey.Reveal(), KeyID: k.KeyID, APIKey: k.APIKey.Reveal()}
	if j == (keysJSON{}) {
		return secret.Value{}, nil
	}
	raw, err := json.Marshal(j)
	if err != nil {
		return secret.Value{}, errors.New("encode keys") // never the error text: it could quote a key
	}
	return secret.New(string(raw)), nil
}

func decodeKeys(plain []byte) (Keys, error) {
	var j keysJSON
	if err := json.Unmarshal(plain, &j); err != nil {
		return Keys{}, errors.New("stored keys are not in the expected format")
	}
	return Keys{ClientSecret: secret.New(j.ClientSecret), PrivateKey: secret.New(j.PrivateKey), KeyID: j.KeyID, APIKey: secret.New(j.APIKey)}, nil
}

// KeyFingerprint identifies the key a credential authenticates with,
// without revealing it, for events such as key.revoked: the API key's
// fingerprint where there is one, else the client id's.
func (c Credential) KeyFingerprint() string {
	if !c.APIKey.IsZero() {
		return c.APIKey.Fingerprint()
	}
	return secret.Fingerprint(c.ClientID)
}
