package config

import (
	"encoding/base64"
	"os"
	"testing"
)

// The deployment example shipped in deployments/ must stay valid.
func TestDeploymentExampleIsValid(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../deployments/tokenrelay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CLINIC42_CLIENT_ID": "id", "CLINIC42_CLIENT_SECRET": "s", "PORTAL_CLIENT_ID": "pid", "PORTAL_CLIENT_SECRET": "ps",
		"TOKENRELAY_SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
	}
	cfg, err := Parse(data, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatalf("deployments/tokenrelay.yaml: %v", err)
	}
	if len(cfg.Credentials) != 2 || cfg.Vendors["halaxy-au"].BaseURL != "https://au-api.halaxy.com/main/" {
		t.Fatalf("unexpected parse: %+v", cfg)
	}
}
