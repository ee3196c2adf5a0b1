package tracing

import (
	"context"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// LogHook adds trace_id and span_id to every log event written with a
// context that holds a span (zerolog's Event.Ctx or Logger.WithContext).
type LogHook struct{}

// Run implements zerolog.Hook.
func (LogHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	sc := trace.SpanContextFromContext(e.GetCtx())
	if !sc.IsValid() {
		return
	}
	e.Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String())
}

// Logger returns log with ctx attached, so that every line it writes names
// ctx's span (with [LogHook] installed on log).
func Logger(ctx context.Context, log zerolog.Logger) zerolog.Logger {
	return log.With().Ctx(ctx).Logger()
}
