package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/config"
)

// redisConn is how to reach Redis, as the configuration says: standalone,
// Sentinel or Cluster, with or without TLS.
type redisConn struct {
	// Universal builds the client every component shares.
	Universal *redis.UniversalOptions
	// Asynq is the same connection for code that opens its own (asynqmon).
	Asynq asynq.RedisConnOpt
	// Where names the servers for messages (never the password).
	Where string
}

// redisConnection turns the redis section into connection options; it
// reads the TLS files. Its errors never repeat the URL, which may hold a
// password.
func redisConnection(c config.Redis) (redisConn, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return redisConn{}, errors.New("app: redis.url is not a valid redis:// or rediss:// URL")
	}
	username := u.User.Username()
	password, _ := u.User.Password()
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil || db < 0 {
			return redisConn{}, errors.New("app: redis.url: the path must be a database number (e.g. /0)")
		}
	}
	var tc *tls.Config
	if u.Scheme == "rediss" {
		if tc, err = tlsConfig("redis.tls", c.TLS); err != nil {
			return redisConn{}, err
		}
		if tc.ServerName == "" && len(c.Sentinel.Addrs) == 0 && len(c.Cluster.Addrs) == 0 {
			tc.ServerName = u.Hostname()
		}
	}
	switch {
	case c.Sentinel.Master != "":
		return redisConn{
			Universal: &redis.UniversalOptions{
				MasterName: c.Sentinel.Master, Addrs: c.Sentinel.Addrs,
				SentinelUsername: c.Sentinel.Username, SentinelPassword: c.Sentinel.Password.Reveal(),
				Username: username, Password: password, DB: db, TLSConfig: tc,
			},
			Asynq: asynq.RedisFailoverClientOpt{
				MasterName: c.Sentinel.Master, SentinelAddrs: c.Sentinel.Addrs,
				SentinelUsername: c.Sentinel.Username, SentinelPassword: c.Sentinel.Password.Reveal(),
				Username: username, Password: password, DB: db, TLSConfig: tc,
			},
			Where: fmt.Sprintf("master %s through sentinels %s", c.Sentinel.Master, strings.Join(c.Sentinel.Addrs, ",")),
		}, nil
	case len(c.Cluster.Addrs) > 0:
		if db != 0 {
			return redisConn{}, errors.New("app: redis.url: a Redis Cluster has only database 0")
		}
		return redisConn{
			Universal: &redis.UniversalOptions{
				Addrs: c.Cluster.Addrs, IsClusterMode: true, Username: username, Password: password, TLSConfig: tc,
			},
			Asynq: asynq.RedisClusterClientOpt{Addrs: c.Cluster.Addrs, Username: username, Password: password, TLSConfig: tc},
			Where: "cluster " + strings.Join(c.Cluster.Addrs, ","),
		}, nil
	default:
		// ParseURL keeps the URL's query options (dial_timeout, pool_size…).
		opt, err := redis.ParseURL(c.URL)
		if err != nil {
			return redisConn{}, errors.New("app: redis.url is not a valid Redis URL")
		}
		if tc != nil {
			opt.TLSConfig = tc
		}
		return redisConn{
			Universal: &redis.UniversalOptions{Addrs: []string{opt.Addr}, Username: opt.Username, Password: opt.Password,
				DB: opt.DB, TLSConfig: opt.TLSConfig, DialTimeout: opt.DialTimeout, ReadTimeout: opt.ReadTimeout,
				WriteTimeout: opt.WriteTimeout, PoolSize: opt.PoolSize, MaxRetries: opt.MaxRetries},
			Asynq: asynq.RedisClientOpt{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: opt.DB,
				TLSConfig: opt.TLSConfig, DialTimeout: opt.DialTimeout, ReadTimeout: opt.ReadTimeout,
				WriteTimeout: opt.WriteTimeout, PoolSize: opt.PoolSize},
			Where: opt.Addr,
		}, nil
	}
}

// natsOptions are the NATS options the nats section asks for beyond the
// URL: credentials or an NKey, and TLS.
func natsOptions(c config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.CredsFile != "":
		if err := canRead(c.CredsFile); err != nil {
			return nil, fmt.Errorf("app: nats.creds_file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("app: nats.nkey_seed_file: %w", err)
		}
		opts = append(opts, opt)
	}
	if !c.TLS.IsZero() {
		tc, err := tlsConfig("nats.tls", c.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// tlsConfig builds a client TLS configuration from the files t names.
func tlsConfig(path string, t config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("app: %s.ca_file: %w", path, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("app: %s.ca_file: no PEM certificate in %s", path, t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("app: %s.cert_file/key_file: %w", path, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// canRead reports why a file cannot be read, if it cannot.
func canRead(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	return f.Close()
}
