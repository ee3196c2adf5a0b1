package syncs

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
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// SubjectStart is the NATS subject syncs are started on (after the
// configured subject prefix).
const SubjectStart = "sync.start"

// Identity of the micro service, as `nats micro ls` shows it.
const (
	ServiceName       = "tokenrelay-syncs"
	ServiceVersion    = "1.0.0"
	DefaultQueueGroup = "tokenrelay-syncs"
)

// Starter starts a sync (Runner satisfies it).
type Starter interface {
	Start(ctx context.Context, s jobs.Sync) (jobs.Sync, error)
}

// ServiceOptions configure the NATS service; they mean what
// requests.ServiceOptions' fields do.
type ServiceOptions struct {
	SubjectPrefix string
	QueueGroup    string
	Timeout       time.Duration
	Logger        zerolog.Logger
	InboxPrefix   string
}

// NewService answers SubjectPrefix+"sync.start" with s, only to reply
// inboxes (o.InboxPrefix, see natsinbox): {"id","accepted":true} or
// {"error","message"}, as request.submit answers. Stop it when shutting down.
func NewService(nc *nats.Conn, s Starter, o ServiceOptions) (micro.Service, error) {
	if nc == nil || s == nil {
		return nil, errors.New("syncs: the service needs a NATS connection and a starter")
	}
	if o.QueueGroup == "" {
		o.QueueGroup = DefaultQueueGroup
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.InboxPrefix == "" {
		o.InboxPrefix = natsinbox.DefaultPrefix
	}
	if err := natsinbox.CheckPrefix(o.InboxPrefix); err != nil {
		return nil, fmt.Errorf("syncs: ServiceOptions.InboxPrefix: %w", err)
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name: ServiceName, Version: ServiceVersion, QueueGroup: o.QueueGroup, Description: "starts vendor syncs",
	})
	if err != nil {
		return nil, fmt.Errorf("syncs: add service: %w", err)
	}
	start := micro.HandlerFunc(func(req micro.Request) {
		ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
		defer cancel()
		_ = req.RespondJSON(StartJSON(ctx, s, req.Data(), o.Logger))
	})
	err = svc.AddEndpoint("start", natsinbox.Guard(ServiceName, o.InboxPrefix, o.Logger, start),
		micro.WithEndpointSubject(o.SubjectPrefix+SubjectStart), micro.WithEndpointQueueGroup(o.QueueGroup))
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("syncs: add endpoint: %w", err)
	}
	return svc, nil
}

// StartJSON decodes one sync from JSON, starts it and returns the answer:
// requests.Accepted or requests.Refused. The NATS service and the admin
// API share it.
func StartJSON(ctx context.Context, s Starter, body []byte, log zerolog.Logger) any {
	sy, err := DecodeSync(body)
	if err == nil {
		sy, err = s.Start(ctx, sy)
	}
	if err != nil {
		var se *Error
		if !errors.As(err, &se) {
			se = &Error{Code: CodeInvalid, Message: err.Error()}
		}
		if se.Code == CodeUnavailable {
			log.Error().Err(se.Err).Msg("sync start failed")
		}
		return requests.Refused{Error: se.Code, Message: se.Message}
	}
	return requests.Accepted{ID: sy.ID, Accepted: true}
}

// DecodeSync reads a sync's JSON strictly: an unknown field is an error
// naming it.
func DecodeSync(body []byte) (jobs.Sync, error) {
	var s jobs.Sync
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, invalid("the sync must be a JSON object {\"credential\",\"resource\",\"query\",\"mode\",...}: %v", err)
	}
	if dec.More() {
		return s, invalid("the sync must be one JSON object")
	}
	return s, nil
}
