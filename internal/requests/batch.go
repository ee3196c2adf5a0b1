package requests

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// ErrBatchNotFound: the credential has no batch with that id (or its
// records have expired).
var ErrBatchNotFound = errors.New("requests: batch not found")

// ErrBatchCredential: a batch's status or cancel did not name the vendor
// and credential it acts for. A batch belongs to one (vendor, credential):
// the batch "nightly" of one credential and that of another are two
// batches, and neither can be read or cancelled through the other.
var ErrBatchCredential = errors.New("requests: a batch is named by its vendor, credential and id; vendor and credential are required")

// Batches reads and cancels batches. A batch's progress is the admin API's
// adminclient.BatchStatus, which the CLI reads.
type Batches struct {
	rdb   redis.UniversalClient
	keys  keys
	clock func() time.Time
}

// NewBatches returns batches under the store's key prefix ("" means
// "tokenrelay:"); clock nil means time.Now.
func NewBatches(rdb redis.UniversalClient, prefix string, clock func() time.Time) *Batches {
	if clock == nil {
		clock = time.Now
	}
	return &Batches{rdb: rdb, keys: newKeys(prefix), clock: clock}
}

// Status returns the progress of the batch id of the credential of vendor,
// or ErrBatchNotFound (ErrBatchCredential without vendor and credential).
func (b *Batches) Status(ctx context.Context, vendor, credential, id string) (adminclient.BatchStatus, error) {
	if vendor == "" || credential == "" {
		return adminclient.BatchStatus{}, ErrBatchCredential
	}
	if id == "" {
		return adminclient.BatchStatus{}, ErrBatchNotFound
	}
	m, err := b.rdb.HGetAll(ctx, b.keys.batch(vendor, credential, id)).Result()
	if err != nil {
		return adminclient.BatchStatus{}, fmt.Errorf("requests: batch %s: %w", id, err)
	}
	if len(m) == 0 {
		return adminclient.BatchStatus{}, ErrBatchNotFound
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(m[k], 10, 64); return v }
	t := func(k string) time.Time {
		if v := n(k); v > 0 {
			return time.UnixMilli(v).UTC()
		}
		return time.Time{}
	}
	s := adminclient.BatchStatus{ID: id, Vendor: vendor, Credential: credential, Total: n("total"), Queued: n("queued"), Waiting: n("waiting"), Running: n("running"),
		Done: n("done"), Failed: n("failed"), Cancelled: n("cancelled"), CancelRequested: m["cancel"] != "",
		CreatedAt: t("created"), StartedAt: t("started"), LastAt: t("last")}
	ended := s.Done + s.Failed + s.Cancelled
	if !s.StartedAt.IsZero() && ended > 0 {
		end := b.clock()
		if s.Finished() {
			end = s.LastAt
		}
		if el := end.Sub(s.StartedAt).Seconds(); el > 0 {
			s.Rate = float64(ended) / el
		}
		if left := s.Total - ended; left > 0 && s.Rate > 0 && !s.CancelRequested {
			s.EstimatedFinish = b.clock().Add(time.Duration(float64(left) / s.Rate * float64(time.Second))).UTC()
		}
	}
	return s, nil
}

// Cancel stops what has not run of the batch id of the credential of
// vendor: queued requests end as cancelled (request.failed, class
// cancelled) and are never sent; requests already sent finish. Other
// credentials' batches of the same id are untouched. It returns
// ErrBatchNotFound for an unknown batch (ErrBatchCredential without vendor
// and credential).
func (b *Batches) Cancel(ctx context.Context, vendor, credential, id string) error {
	if vendor == "" || credential == "" {
		return ErrBatchCredential
	}
	if id == "" {
		return ErrBatchNotFound
	}
	res, err := scriptCancel.Run(ctx, b.rdb, []string{b.keys.batch(vendor, credential, id)}, b.clock().UnixMilli()).Text()
	if err != nil {
		return fmt.Errorf("requests: cancel batch %s: %w", id, err)
	}
	if res == "NOTFOUND" {
		return ErrBatchNotFound
	}
	return nil
}

// Jobs is what the admin API uses of request jobs: submission and batches.
type Jobs struct {
	Submitter *Submitter
	Batches   *Batches
}

// Submit validates and queues a request (Submitter.Submit).
func (j Jobs) Submit(ctx context.Context, r jobs.Request) (jobs.Request, error) {
	if j.Submitter == nil {
		return r, &SubmitError{Code: CodeUnavailable, Message: "request submission is not enabled here"}
	}
	return j.Submitter.Submit(ctx, r)
}

// BatchStatus is Batches.Status.
func (j Jobs) BatchStatus(ctx context.Context, vendor, credential, id string) (adminclient.BatchStatus, error) {
	return j.Batches.Status(ctx, vendor, credential, id)
}

// CancelBatch is Batches.Cancel.
func (j Jobs) CancelBatch(ctx context.Context, vendor, credential, id string) error {
	return j.Batches.Cancel(ctx, vendor, credential, id)
}
