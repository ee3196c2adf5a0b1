package app

import (
	"net/http"

	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
)

// newWebSessions are the sessions of the worker's pages (the operator
// pages and the queue dashboard), kept in Redis so that every replica
// accepts a sign-in made on another and a sign-out ends the session on
// all of them. Their Throttle also counts the admin API's wrong bearer
// tokens, per worker process.
func newWebSessions(env *Env) *websession.Sessions {
	var st websession.Store
	if env.Redis != nil {
		st = websession.RedisStore{Client: env.Redis, Prefix: env.Config.Redis.Prefix}
	}
	return websession.New(env.Config.HTTP.AdminToken, websession.Options{Now: env.Clock, Store: st})
}

// metricsAuth guards /metrics with http.metrics_token when it is set
// (wrong tokens counted by th, which may be nil); without it /metrics is
// open, as Prometheus expects by default.
func metricsAuth(env *Env, th *websession.Throttle, h http.Handler) http.Handler {
	if env.Config.HTTP.MetricsToken.IsZero() {
		return h
	}
	return admin.RequireTokenThrottled(env.Config.HTTP.MetricsToken, th, h)
}
