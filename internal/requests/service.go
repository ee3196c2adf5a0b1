package requests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/natsinbox"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// SubjectSubmit is the NATS subject requests are submitted on (after the
// configured subject prefix).
const SubjectSubmit = "request.submit"

// Identity of the micro service, as `nats micro ls` shows it.
const (
	ServiceName       = "tokenrelay-requests"
	ServiceVersion    = "1.0.0"
	DefaultQueueGroup = "tokenrelay-requests"
)

// Accepted is the answer to an accepted submission.
type Accepted struct {
	ID       string `json:"id"`
	Accepted bool   `json:"accepted"`
}

// Refused is the answer to a refused submission.
type Refused struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// ServiceOptions configure the NATS submission service.
type ServiceOptions struct {
	// SubjectPrefix is put before SubjectSubmit ("" or ending with ".").
	SubjectPrefix string
	// QueueGroup shares submissions among workers. Default DefaultQueueGroup.
	QueueGroup string
	// Timeout bounds one submission. Default 5s.
	Timeout time.Duration
	Logger  zerolog.Logger
	// InboxPrefix is the only place answers go: a submission whose reply
	// subject is not under it is dropped (not submitted) and logged, never
	// answered (see natsinbox). Default natsinbox.DefaultPrefix, "_INBOX.".
	InboxPrefix string
}

// NewService answers submissions on SubjectPrefix+"request.submit" with
// s, as a NATS micro service, only to reply inboxes (o.InboxPrefix): a
// submission naming another reply subject is neither submitted nor answered. Stop the returned service when shutting down.
func NewService(nc *nats.Conn, s *Submitter, o ServiceOptions) (micro.Service, error) {
	if s == nil {
		return nil, errors.New("requests: the service needs a submitter")
	}
	return NewJSONService(nc, ServiceSpec{Name: ServiceName, Version: ServiceVersion, QueueGroup: DefaultQueueGroup,
		Description: "accepts vendor request jobs", Endpoint: "submit", Subject: SubjectSubmit}, o,
		func(ctx context.Context, body []byte) any { return SubmitJSON(ctx, s, body, o.Logger) })
}

// ServiceSpec names a JSON request/reply service.
type ServiceSpec struct {
	Name, Version, Description string
	// QueueGroup is the default of ServiceOptions.QueueGroup.
	QueueGroup string
	// Endpoint names the endpoint; Subject is its subject after
	// ServiceOptions.SubjectPrefix.
	Endpoint, Subject string
}

// NewJSONService runs a NATS micro service that answers each message on
// o.SubjectPrefix+spec.Subject with answer's value as JSON, only to reply
// inboxes (o.InboxPrefix, see natsinbox), each within o.Timeout: the
// shape of request.submit, which sync.start shares. Stop it when shutting
// down.
func NewJSONService(nc *nats.Conn, spec ServiceSpec, o ServiceOptions, answer func(ctx context.Context, body []byte) any) (micro.Service, error) {
	if nc == nil || answer == nil {
		return nil, fmt.Errorf("%s: the service needs a NATS connection and an answer", spec.Name)
	}
	if o.QueueGroup == "" {
		o.QueueGroup = spec.QueueGroup
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.InboxPrefix == "" {
		o.InboxPrefix = natsinbox.DefaultPrefix
	}
	if err := natsinbox.CheckPrefix(o.InboxPrefix); err != nil {
		return nil, fmt.Errorf("%s: ServiceOptions.InboxPrefix: %w", spec.Name, err)
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name: spec.Name, Version: spec.Version, QueueGroup: o.QueueGroup, Description: spec.Description,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: add service: %w", spec.Name, err)
	}
	h := micro.HandlerFunc(func(req micro.Request) {
		ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
		defer cancel()
		ctx, span := tracing.StartServer(ctx, spec.Subject, nats.Header(req.Headers()))
		defer span.End()
		// The reply carries this span's context: the submission's parent.
		_ = req.RespondJSON(answer(ctx, req.Data()), micro.WithHeaders(micro.Headers(tracing.ReplyHeaders(ctx))))
	})
	err = svc.AddEndpoint(spec.Endpoint, natsinbox.Guard(spec.Name, o.InboxPrefix, o.Logger, h),
		micro.WithEndpointSubject(o.SubjectPrefix+spec.Subject), micro.WithEndpointQueueGroup(o.QueueGroup))
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("%s: add endpoint: %w", spec.Name, err)
	}
	return svc, nil
}

// SubmitJSON decodes one request from JSON, submits it and returns the
// answer: Accepted or Refused. The NATS service and the admin API share it.
func SubmitJSON(ctx context.Context, s *Submitter, body []byte, log zerolog.Logger) any {
	r, err := DecodeRequest(body)
	if err == nil {
		r, err = s.Submit(ctx, r)
	}
	if err != nil {
		var se *SubmitError
		if !errors.As(err, &se) {
			se = &SubmitError{Code: CodeInvalid, Message: err.Error()}
		}
		if se.Code == CodeUnavailable {
			log.Error().Err(se.Err).Msg("request submission failed")
		}
		return Refused{Error: se.Code, Message: se.Message}
	}
	return Accepted{ID: r.ID, Accepted: true}
}

// DecodeRequest reads a submission's JSON strictly: an unknown field is an
// error naming it, so that a misspelt "idempotency_key" is not ignored.
func DecodeRequest(body []byte) (jobs.Request, error) {
	var r jobs.Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, invalid("the request must be a JSON object {\"credential\",\"method\",\"path\",...}: %v", err)
	}
	if dec.More() {
		return r, invalid("the request must be one JSON object")
	}
	if r.Sync != "" {
		return r, invalid("sync is set by tokenrelay for the pages of a sync; start a sync on sync.start instead")
	}
	r.SubmittedAt = time.Time{}
	return r, nil
}
