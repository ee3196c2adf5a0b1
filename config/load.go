package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Environment variables read by Path and Parse.
const (
	EnvConfig    = "TOKENRELAY_CONFIG"
	EnvRedisURL  = "REDIS_URL"
	EnvNATSURL   = "NATS_URL"
	EnvSecretKey = "TOKENRELAY_SECRET_KEY"
	EnvHTTPAddr  = "TOKENRELAY_HTTP_ADDR"
)

// SecretKeySize is the length in bytes of the master key.
const SecretKeySize = 32

// ErrNoPath is returned by Load when no configuration file was named,
// neither by the -config flag nor by TOKENRELAY_CONFIG.
var ErrNoPath = errors.New("config: no configuration file given (pass -config PATH, or set " + EnvConfig + ")")

// maxNodes bounds the YAML nodes a file may expand to through aliases.
const maxNodes = 100_000

// Path picks the configuration file: the -config flag's value when given,
// else TOKENRELAY_CONFIG, else "" (which Load refuses with ErrNoPath).
func Path(flagValue string, lookup func(string) (string, bool)) string {
	if flagValue != "" {
		return flagValue
	}
	if lookup != nil {
		if p, ok := lookup(EnvConfig); ok {
			return p
		}
	}
	return ""
}

// Load reads the configuration file at path and parses it with the
// process environment (see Parse). A refused configuration is a
// *ValidationError whose File is path.
func Load(path string) (*Config, error) {
	if path == "" {
		return nil, ErrNoPath
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data, os.LookupEnv)
	var ve *ValidationError
	if errors.As(err, &ve) {
		ve.File = path
	}
	return cfg, err
}

// Parse builds a Config from the YAML in data and the environment seen
// through lookup (os.LookupEnv in production, a map in tests; nil is an
// empty environment): it expands
// ${NAME} references, decodes strictly (an unknown field is an error),
// applies the environment overrides (REDIS_URL, NATS_URL,
// TOKENRELAY_HTTP_ADDR; TOKENRELAY_SECRET_KEY is required), fills the
// defaults and validates. Every problem found is reported at once in a
// *ValidationError.
func Parse(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	p := newProblems()
	cfg := &Config{}
	d := &decoder{lookup: lookup, p: p, present: map[string]bool{}, budget: maxNodes}

	data, err := mask(data)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	switch err := dec.Decode(&root); {
	case errors.Is(err, io.EOF):
		// An empty file: defaults and the environment only.
	case err != nil:
		return nil, syntaxError(err)
	default:
		var next yaml.Node
		switch err := dec.Decode(&next); {
		case err == nil:
			line := next.Line
			if len(next.Content) > 0 {
				line = next.Content[0].Line
			}
			p.addAt("", line, "holds more than one YAML document (keep one: remove the second ---)")
			return nil, p.err()
		case !errors.Is(err, io.EOF):
			return nil, syntaxError(err)
		}
		d.decode(&root, "", reflect.ValueOf(cfg).Elem())
	}

	override := func(env, path string, field *string) {
		if v, ok := lookup(env); ok && v != "" {
			*field = v
			p.labels[path] = env
		}
	}
	override(EnvRedisURL, "redis.url", &cfg.Redis.URL)
	override(EnvNATSURL, "nats.url", &cfg.NATS.URL)
	override(EnvHTTPAddr, "http.addr", &cfg.HTTP.Addr)
	cfg.Redis.expandRedisURL(p) // redis+sentinel://, redis+cluster://
	cfg.SecretKey, cfg.SecretKeysPrevious, cfg.KMS = masterKeys(lookup, p)

	jitterSet := map[string]bool{}
	for name := range cfg.Vendors {
		jitterSet[name] = d.present["vendors."+name+".refresh_jitter"]
	}
	cfg.setDefaults(jitterSet)
	cfg.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// secretKey decodes TOKENRELAY_SECRET_KEY.
func secretKey(lookup func(string) (string, bool), p *problems) secret.Value {
	s, _ := lookup(EnvSecretKey)
	s = strings.TrimSpace(s)
	if s == "" {
		p.add(EnvSecretKey, "not set (%s)", keyHint)
		return secret.Value{}
	}
	key, ok := decodeKey(EnvSecretKey, s, p)
	if !ok {
		return secret.Value{}
	}
	return secret.New(string(key))
}

// keyHint says how to make a master key.
const keyHint = "generate one with: head -c 32 /dev/urandom | base64"

// decodeKey decodes one base64 master key read from env (which names it in
// a problem; never the value) and checks its size.
func decodeKey(env, s string, p *problems) ([]byte, bool) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		p.add(env, "not valid base64 (%s)", keyHint)
		return nil, false
	}
	if len(key) != SecretKeySize {
		p.add(env, "decodes to %d bytes, want %d (%s)", len(key), SecretKeySize, keyHint)
		return nil, false
	}
	return key, true
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

// syntaxError reports a file yaml.v3 cannot parse, moving the line it names
// to where every problem has its line.
func syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	return &ValidationError{Problems: []Problem{{Line: line, Message: "not valid YAML: " + msg}}}
}
