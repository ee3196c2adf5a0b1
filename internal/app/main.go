package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// Main is the whole of cmd/scheduler's and cmd/worker's main: it parses
// -config (else TOKENRELAY_CONFIG), loads and validates the configuration,
// connects, runs role until SIGINT or SIGTERM, and returns the exit code.
// With -version it prints the build (internal/buildinfo) to stdout and
// returns 0, reading no configuration.
func Main(name string, args []string, stdout, stderr io.Writer, role func(ctx context.Context, env *Env) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "path of the YAML configuration (default: $TOKENRELAY_CONFIG)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	version := fs.Bool("version", false, "print the version, commit and Go version, and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "%s: -log-level: %v\n", name, err)
		return 2
	}
	log := zerolog.New(stderr).Level(lvl).Hook(tracing.LogHook{}).With().Timestamp().Str("process", name).Logger()
	cfg, err := config.Load(config.Path(*path, os.LookupEnv))
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration refused:\n%v\n", name, err)
		return 2
	}
	// go-redis's own messages (a lost connection, failed dials) become log
	// lines like the others, not bare text on stderr. (Process-wide: set
	// once the process is going to connect.)
	redis.SetLogger(redisLogger{log.With().Str("component", "go-redis").Logger()})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Traces go where the standard OTEL_* variables say; none set, none sent.
	flushTraces, err := tracing.Setup(ctx, "tokenrelay-"+name, os.Getenv)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := flushTraces(fctx); err != nil {
			log.Warn().Err(err).Msg("could not send the last traces")
		}
	}()
	env, err := Connect(ctx, cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	defer env.Close()
	if err := role(ctx, env); err != nil {
		log.Error().Err(err).Msg("stopped with an error")
		return 1
	}
	return 0
}

// redisLogger writes go-redis's messages as warnings.
type redisLogger struct{ l zerolog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msg(fmt.Sprintf(format, v...))
}
