package syncs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

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

// NewService answers o.SubjectPrefix+"sync.start" with s, only to reply
// inboxes (o.InboxPrefix, see natsinbox): {"id","accepted":true} or
// {"error","message"}, as request.submit answers (and with the same
// options). Stop it when shutting down.
func NewService(nc *nats.Conn, s Starter, o requests.ServiceOptions) (micro.Service, error) {
	if s == nil {
		return nil, errors.New("syncs: the service needs a starter")
	}
	return requests.NewJSONService(nc, requests.ServiceSpec{Name: ServiceName, Version: ServiceVersion, QueueGroup: DefaultQueueGroup,
		Description: "starts vendor syncs", Endpoint: "start", Subject: SubjectStart}, o,
		func(ctx context.Context, body []byte) any { return StartJSON(ctx, s, body, o.Logger) })
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
