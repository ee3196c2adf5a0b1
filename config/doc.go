// Package config turns tokenrelay's one YAML file and the environment into
// validated values, shared by the scheduler and the worker.
//
// The file is given as -config PATH, or TOKENRELAY_CONFIG when the flag is
// absent (see Path). Inside any scalar value, ${NAME} is replaced by the
// environment variable NAME (an unset one is an error, an empty one is
// empty), and $${ stands for a literal ${. Expansion runs after the YAML is
// parsed, so an environment value is always the text of the one value it
// stands in and can never add or change YAML structure; references may be
// written unquoted, even inside a flow mapping such as
// {id: c1, client_secret: ${C1_SECRET}}. Secrets (client secrets, API keys,
// private keys, the admin token, webhook secrets) are meant to come in this
// way, and are held as secret.Value.
//
// Four environment variables override the file: REDIS_URL (redis.url),
// NATS_URL (nats.url), TOKENRELAY_HTTP_ADDR (http.addr) and
// TOKENRELAY_SECRET_KEY, the base64 master key for sealing secrets at rest,
// which is only ever read from the environment. REDIS_URL (or redis.url)
// may point at a Sentinel or a Redis Cluster by itself:
// redis+sentinel://[user:password@]host:port,host:port/master[/db] or
// redis+cluster://[user:password@]host:port,host:port (rediss+… for TLS);
// Parse turns it into the redis:// URL and the redis.sentinel or
// redis.cluster fields.
// Behind Sentinel (or on a Redis Cluster with replicas), set
// redis.min_replica_acks to 1: the writes that fence vendor calls then
// wait for a replica (Redis WAIT, redis.replica_ack_timeout), so that a
// failover cannot lose a claim and cost a second token call; see
// deployments/README.md for what it costs.
//
// Anything wrong refuses to start: Parse and Load report every problem at
// once in a *ValidationError, one line each, naming the field path (and its
// line in the file) and what to do about it. No message ever contains the
// value of a secret field or of an environment variable (a value built
// from one is shown as the reference written in the file, "${NAME}"), nor
// more of a Redis or NATS URL than its scheme. Each vendor is checked with
// its kind's rules (package vendors/kind), its adapter's own checks
// included, so that a file that passes starts.
//
// testdata/valid.yaml is a complete, commented example.
//
// A zero value in any field means its documented default, except
// refresh_jitter: an explicit 0 in the file turns jitter off.
package config
