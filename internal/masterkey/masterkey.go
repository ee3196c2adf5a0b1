package masterkey

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"gocloud.dev/secrets"
	_ "gocloud.dev/secrets/localsecrets" // base64key://, always linked

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// unwrapTimeout bounds the KMS calls at start when the context has no
// deadline.
const unwrapTimeout = 30 * time.Second

// Keyring builds the keyring of cfg: it seals with the current master key
// (cfg.SecretKey, or cfg.KMS.Wrapped unwrapped by the KMS) and opens with
// it and every previous key. A KMS that cannot be opened, a wrapped key it
// does not unwrap (the wrong KMS key) or that does not unwrap to 32 bytes,
// and a key given twice are errors naming the environment variable; no
// error holds a key.
func Keyring(ctx context.Context, cfg *config.Config) (*seal.Keyring, error) {
	type named struct {
		env string
		key []byte
	}
	var keys []named // current first
	if !cfg.SecretKey.IsZero() {
		keys = append(keys, named{config.EnvSecretKey, []byte(cfg.SecretKey.Reveal())})
	}
	if cfg.KMS.URL != "" {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, unwrapTimeout)
			defer cancel()
		}
		keeper, err := Open(ctx, cfg.KMS.URL)
		if err != nil {
			return nil, err
		}
		defer func() { _ = keeper.Close() }()
		if cfg.KMS.Wrapped != nil {
			k, err := unwrap(ctx, keeper, config.EnvSecretKeyWrapped, cfg.KMS.Wrapped)
			if err != nil {
				return nil, err
			}
			keys = append(keys, named{config.EnvSecretKeyWrapped, k})
		}
		for i, w := range cfg.KMS.PreviousWrapped {
			env := fmt.Sprintf("%s (key %d)", config.EnvSecretKeysPreviousWrapped, i+1)
			k, err := unwrap(ctx, keeper, env, w)
			if err != nil {
				return nil, err
			}
			keys = append(keys, named{env, k})
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("masterkey: no master key: set %s, or %s with %s", config.EnvSecretKey, config.EnvSecretKeyWrapped, config.EnvKMSURL)
	}
	for i, k := range cfg.SecretKeysPrevious {
		keys = append(keys, named{fmt.Sprintf("%s (key %d)", config.EnvSecretKeysPrevious, i+1), []byte(k.Reveal())})
	}
	for i, k := range keys {
		if j := slices.IndexFunc(keys[:i], func(o named) bool { return bytes.Equal(o.key, k.key) }); j >= 0 {
			return nil, fmt.Errorf("masterkey: %s is the same key as %s (key id %s): list each key once", k.env, keys[j].env, seal.KeyID(k.key))
		}
	}
	old := make([][]byte, 0, len(keys)-1)
	for _, k := range keys[1:] {
		old = append(old, k.key)
	}
	ring, err := seal.NewKeyring(keys[0].key, old...)
	if err != nil {
		return nil, fmt.Errorf("masterkey: %w", err)
	}
	return ring, nil
}

// Open opens the KMS key at url. An unknown scheme says which build tag
// links its driver.
func Open(ctx context.Context, rawURL string) (*secrets.Keeper, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse quotes the URL, which may hold a key (base64key://).
		return nil, fmt.Errorf("masterkey: %s is not a URL", config.EnvKMSURL)
	}
	keeper, err := secrets.OpenKeeper(ctx, rawURL)
	if err != nil {
		if tag, ok := driverTags[u.Scheme]; ok && !slices.Contains(secrets.DefaultURLMux().KeeperSchemes(), u.Scheme) {
			return nil, fmt.Errorf("masterkey: %s: the %s:// driver is not in this binary: build it with -tags %s (see docs/keys.md)", config.EnvKMSURL, u.Scheme, tag)
		}
		return nil, fmt.Errorf("masterkey: %s: open the KMS key (%s://): %s", config.EnvKMSURL, u.Scheme, scrub(err, rawURL))
	}
	return keeper, nil
}

// driverTags are the build tags that link each KMS driver.
var driverTags = map[string]string{
	"awskms":        "kms_aws",
	"gcpkms":        "kms_gcp",
	"azurekeyvault": "kms_azure",
	"hashivault":    "kms_vault",
}

// unwrap asks the KMS to decrypt a wrapped master key.
func unwrap(ctx context.Context, keeper *secrets.Keeper, env string, wrapped []byte) ([]byte, error) {
	key, err := keeper.Decrypt(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("masterkey: %s: the KMS does not unwrap it (is %s the KMS key that wrapped it, and may this process use it?): %w",
			env, config.EnvKMSURL, errors.Unwrap(err))
	}
	if len(key) != seal.KeySize {
		return nil, fmt.Errorf("masterkey: %s unwraps to %d bytes, want %d", env, len(key), seal.KeySize)
	}
	return key, nil
}

// Wrap has the KMS at url encrypt key (a master key of seal.KeySize
// bytes), for TOKENRELAY_SECRET_KEY_WRAPPED; a nil key is drawn at random.
// It returns the wrapped key and the key id of the master key.
func Wrap(ctx context.Context, url string, key []byte) (wrapped []byte, kid string, err error) {
	if key == nil {
		key = make([]byte, seal.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, "", fmt.Errorf("masterkey: draw a key: %w", err)
		}
	}
	if len(key) != seal.KeySize {
		return nil, "", fmt.Errorf("masterkey: a master key is %d bytes, not %d", seal.KeySize, len(key))
	}
	keeper, err := Open(ctx, url)
	if err != nil {
		return nil, "", err
	}
	defer func() { _ = keeper.Close() }()
	wrapped, err = keeper.Encrypt(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("masterkey: the KMS does not wrap the key: %s", scrub(err, url))
	}
	return wrapped, seal.KeyID(key), nil
}

// scrub is the text of a driver's error without the KMS URL in it (a
// base64key:// URL is the key itself).
func scrub(err error, rawURL string) string {
	return strings.ReplaceAll(err.Error(), rawURL, "[KMS URL]")
}
