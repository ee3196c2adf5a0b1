package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/tokenrelay/tokenrelay/secret"
)

// keysJSON is how Keys are encoded before sealing: short names, empty ones
// left out, so a plain client secret costs a dozen bytes more than itself.
type keysJSON struct {
	ClientSecret string `json:"cs,omitempty"`
	PrivateKey   string `json:"pk,omitempty"`
	KeyID        string `json:"kid,omitempty"`
	APIKey       string `json:"ak,omitempty"`
	RefreshToken string `json:"rt,omitempty"`
}

// encode returns the keys as one secret value; zero when there are none.
func (k Keys) encode() (secret.Value, error) {
	j := keysJSON{ClientSecret: k.ClientSecret.Reveal(), PrivateKey: k.PrivateKey.Reveal(), KeyID: k.KeyID, APIKey: k.APIKey.Reveal(),
		RefreshToken: k.RefreshToken.Reveal()}
	if j == (keysJSON{}) {
		return secret.Value{}, nil
	}
	raw, err := json.Marshal(j)
	if err != nil {
		return secret.Value{}, errors.New("encode keys") // never the error text: it could quote a key
	}
	return secret.New(string(raw)), nil
}

// decodeKeys reads what encode sealed. It runs on every renewal, so the
// usual bundle (what encode writes when no value needs escaping) is read
// without encoding/json; anything else goes through it.
func decodeKeys(plain []byte) (Keys, error) {
	if k, ok := decodeKeysFast(plain); ok {
		return k, nil
	}
	var j keysJSON
	if err := json.Unmarshal(plain, &j); err != nil {
		return Keys{}, errors.New("stored keys are not in the expected format")
	}
	return j.keys(), nil
}

func (j keysJSON) keys() Keys {
	return Keys{ClientSecret: secret.New(j.ClientSecret), PrivateKey: secret.New(j.PrivateKey), KeyID: j.KeyID, APIKey: secret.New(j.APIKey),
		RefreshToken: secret.New(j.RefreshToken)}
}

// decodeKeysFast reads a bundle in the exact shape encode writes, an object
// of the short names with string values, no space and no escape in it
// (json.Marshal escapes <, > and & as well as quotes, backslashes and
// control characters). It reports false for anything else, such as a PEM
// key (newlines), for json.Unmarshal to read.
func decodeKeysFast(b []byte) (Keys, bool) {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' || bytes.IndexByte(b, '\\') >= 0 {
		return Keys{}, false
	}
	var j keysJSON
	rest := b[1 : len(b)-1]
	for len(rest) > 0 {
		name, after, ok := cutQuoted(rest)
		if !ok || len(after) == 0 || after[0] != ':' {
			return Keys{}, false
		}
		value, after, ok := cutQuoted(after[1:])
		if !ok {
			return Keys{}, false
		}
		v := string(value)
		switch string(name) {
		case "cs":
			j.ClientSecret = v
		case "pk":
			j.PrivateKey = v
		case "kid":
			j.KeyID = v
		case "ak":
			j.APIKey = v
		case "rt":
			j.RefreshToken = v
		default:
			return Keys{}, false
		}
		if len(after) > 0 {
			if after[0] != ',' || len(after) == 1 {
				return Keys{}, false
			}
			after = after[1:]
		}
		rest = after
	}
	return j.keys(), true
}

// cutQuoted cuts a JSON string without escapes off the front of b: its
// content and what follows it. It refuses control characters and invalid
// UTF-8, which encoding/json treats otherwise.
func cutQuoted(b []byte) (content, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	content = b[1 : 1+end]
	ascii := true
	for _, c := range content {
		if c < 0x20 {
			return nil, nil, false
		}
		ascii = ascii && c < utf8.RuneSelf
	}
	if !ascii && !utf8.Valid(content) {
		return nil, nil, false
	}
	return content, b[2+end:], true
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
