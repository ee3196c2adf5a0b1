package tracing

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Transport wraps base (http.DefaultTransport when nil) so that each
// request made with a context holding a span becomes a client span: its
// method, host and status, nothing else. Not the path or the query (they
// can name a patient), not a header (they carry credentials), not a body.
// No trace header is sent to the vendor. Requests made outside any span,
// or inside one that is not sampled, are not traced: their span would be
// dropped anyway, and starting it was a third of tracing's cost to a
// renewal at 1 % sampling (issue 14).
func Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return transport{base}
}

type transport struct{ base http.RoundTripper }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !trace.SpanContextFromContext(req.Context()).IsSampled() {
		return t.base.RoundTrip(req)
	}
	ctx, span := Tracer().Start(req.Context(), "HTTP "+req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Hostname())))
	defer span.End()
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		Fail(span, errNoURL{err})
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, strconv.Itoa(resp.StatusCode))
	}
	return resp, nil
}

// errNoURL is a transport error as a span records it: its text without the
// URL (a *url.Error quotes the whole URL, query string included).
type errNoURL struct{ err error }

func (e errNoURL) Error() string {
	type unwrapper interface{ Unwrap() error }
	if u, ok := e.err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap().Error()
	}
	return "request failed"
}

// Handler wraps h so that each request it serves is a server span named
// route (the mux pattern, e.g. "POST /admin/requests"): a child of the
// caller's span when the request's traceparent header names one, else the
// root of a new trace, so that work submitted over HTTP starts its trace
// there. The span records the method, the route and the status: not the
// path's values, the query, a header or the body. The response carries the
// span's traceparent header, as a NATS reply does, so that the caller can
// link to what it started.
func Handler(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		if trace.SpanContextFromContext(ctx).IsValid() {
			w3c.Inject(ctx, propagation.HeaderCarrier(w.Header()))
		}
		if !span.IsRecording() {
			h.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(sw.status))
		}
	})
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
