package requests

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// A request job is one trace: its submission's span (requests.submit, a
// child of the caller's: the request.submit message's headers, the admin
// API's request, a sync page's run) is carried beside the sealed request
// (the clear part of its queue entry, entry.go) through the queue, the feeder's release
// (requests.release) and every run of its task (jobs.request, each a child
// of the submission, whether asynq retries it or the feeder releases it
// again after a hand-back). A run's budget take (requests.budget), its
// vendor call (the HTTP client span of tracing.Transport) and its outcome
// event (request.completed/failed, published under the run's span) are
// the run's children. Spans carry ids, never the path, query, headers or
// body (patient data).

// requestAttrs are the attributes every span of request r carries.
func requestAttrs(r jobs.Request) []attribute.KeyValue {
	attrs := []attribute.KeyValue{tracing.AttrVendor.String(r.Vendor), tracing.AttrCredential.String(r.Credential),
		tracing.AttrRequest.String(r.ID)}
	if r.Sync != "" {
		attrs = append(attrs, tracing.AttrSync.String(r.Sync))
	}
	return attrs
}

// traceSubmit starts the span of a submission, a child of ctx's.
func traceSubmit(ctx context.Context) (context.Context, trace.Span) {
	return tracing.Tracer().Start(ctx, "requests.submit", trace.WithSpanKind(trace.SpanKindProducer))
}

// endSubmit ends a submission's span; a refusal is recorded by its code
// alone (its message may quote the request's path).
func endSubmit(span trace.Span, r jobs.Request, err error) {
	span.SetAttributes(requestAttrs(r)...)
	if err != nil {
		code := CodeUnavailable
		if se := (*SubmitError)(nil); errors.As(err, &se) {
			code = se.Code
		}
		span.SetStatus(codes.Error, code)
	}
	span.End()
}

// submissionKey holds, in a run's context, its submission's trace context:
// what a hand-back to the feeder keeps for the next run.
type submissionKey struct{}

// traceRun starts the span of one run of request r's task: a child of its
// submission (carried in tc), with asynq's retry count as its attempt. The
// attributes are made only for a span that records them: with tracing off
// none does, and they were made and dropped for every request.
func traceRun(ctx context.Context, r jobs.Request, tc tracing.Carrier, retried int) (context.Context, trace.Span) {
	ctx = context.WithValue(ctx, submissionKey{}, tc)
	ctx, span := tracing.Tracer().Start(tc.Extract(ctx), "jobs.request", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(append(requestAttrs(r), tracing.AttrAttempt.Int(retried))...)
	}
	return ctx, span
}

// endRun ends a run's span: a wait (*RetryAt: for a token, a 429 pause)
// is no failure, and says why; any other error fails the span with the
// text asynq keeps (it names no path, query or body).
func endRun(span trace.Span, err error) {
	if wait := (*jobs.RetryAt)(nil); errors.As(err, &wait) {
		span.SetAttributes(attribute.String("tokenrelay.wait", wait.Reason))
	} else {
		tracing.Fail(span, err)
	}
	span.End()
}

// submission is the trace context of the submission of the request whose
// run ctx belongs to.
func submission(ctx context.Context) tracing.Carrier {
	tc, _ := ctx.Value(submissionKey{}).(tracing.Carrier)
	return tc
}

// traceRelease records the feeder's release of a queued request as a span
// of the request's trace (nothing when it carries none).
func traceRelease(ctx context.Context, sr entryHead, release string) {
	if sr.Trace.IsZero() {
		return
	}
	_, span := tracing.Tracer().Start(sr.Trace.Extract(context.WithoutCancel(ctx)), "requests.release",
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(tracing.AttrVendor.String(sr.Vendor),
			tracing.AttrCredential.String(sr.Credential), tracing.AttrRequest.String(sr.ID), attribute.String("tokenrelay.release", release)))
	span.End()
}

// traceBudget starts the span of a run's take of its account's budget;
// endBudget ends it with whether a permit was granted and, when not, the
// wait until the next one.
func traceBudget(ctx context.Context, account string) trace.Span {
	_, span := tracing.Tracer().Start(ctx, "requests.budget")
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tokenrelay.account", account))
	}
	return span
}

func endBudget(span trace.Span, ok bool, retryAt, now time.Time, err error) {
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrBudgetGranted.Bool(ok))
		if !ok && err == nil {
			span.SetAttributes(tracing.AttrBudgetWait.Int64(max(retryAt.Sub(now), 0).Milliseconds()))
		}
	}
	tracing.Fail(span, err)
	span.End()
}
