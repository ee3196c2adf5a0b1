package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/secret"
)

// writeCA writes a self-signed CA certificate and its key as PEM files.
func writeCA(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

func TestRedisConnection(t *testing.T) {
	t.Parallel()
	cert, key := writeCA(t)

	standalone, err := redisConnection(config.Redis{URL: "rediss://user:pw@redis.internal:6380/3?pool_size=7", TLS: config.TLS{CAFile: cert}})
	require.NoError(t, err)
	require.Equal(t, []string{"redis.internal:6380"}, standalone.Universal.Addrs)
	require.Equal(t, 3, standalone.Universal.DB)
	require.Equal(t, 7, standalone.Universal.PoolSize, "URL options are kept")
	require.Equal(t, "redis.internal", standalone.Universal.TLSConfig.ServerName)
	require.NotNil(t, standalone.Universal.TLSConfig.RootCAs)
	require.IsType(t, asynq.RedisClientOpt{}, standalone.Asynq)
	require.NotContains(t, standalone.Where, "pw")

	sentinel, err := redisConnection(config.Redis{URL: "redis://:pw@ignored/2", Sentinel: config.RedisSentinel{
		Master: "mymaster", Addrs: []string{"s-0:26379", "s-1:26379"}, Password: secret.New("spw")}})
	require.NoError(t, err)
	require.Equal(t, "mymaster", sentinel.Universal.MasterName)
	require.Equal(t, []string{"s-0:26379", "s-1:26379"}, sentinel.Universal.Addrs)
	require.Equal(t, "spw", sentinel.Universal.SentinelPassword)
	require.Equal(t, "pw", sentinel.Universal.Password)
	require.Equal(t, 2, sentinel.Universal.DB)
	require.Nil(t, sentinel.Universal.TLSConfig)
	fo, ok := sentinel.Asynq.(asynq.RedisFailoverClientOpt)
	require.True(t, ok)
	require.Equal(t, "mymaster", fo.MasterName)

	cluster, err := redisConnection(config.Redis{URL: "rediss://:pw@ignored", Cluster: config.RedisCluster{Addrs: []string{"r-0:6379"}},
		TLS: config.TLS{CertFile: cert, KeyFile: key}})
	require.NoError(t, err)
	require.True(t, cluster.Universal.IsClusterMode, "one seed node is still a cluster")
	require.Len(t, cluster.Universal.TLSConfig.Certificates, 1)
	_, ok = cluster.Asynq.(asynq.RedisClusterClientOpt)
	require.True(t, ok)

	_, err = redisConnection(config.Redis{URL: "rediss://h:1", TLS: config.TLS{CAFile: filepath.Join(t.TempDir(), "missing.pem")}})
	require.ErrorContains(t, err, "redis.tls.ca_file")
}

func TestNATSOptions(t *testing.T) {
	t.Parallel()
	cert, key := writeCA(t)
	opts, err := natsOptions(config.NATS{TLS: config.TLS{CAFile: cert, CertFile: cert, KeyFile: key}})
	require.NoError(t, err)
	require.Len(t, opts, 1)

	_, err = natsOptions(config.NATS{CredsFile: filepath.Join(t.TempDir(), "none.creds")})
	require.ErrorContains(t, err, "nats.creds_file")
	_, err = natsOptions(config.NATS{NKeySeedFile: cert})
	require.ErrorContains(t, err, "nats.nkey_seed_file")
}
