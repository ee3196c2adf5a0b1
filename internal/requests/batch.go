package requests

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

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

// BatchStatus is a batch's progress: of the requests of one credential
// submitted with that batch id.
type BatchStatus struct {
	ID         string `json:"id"`
	Vendor     string `json:"vendor"`
	Credential string `json:"credential"`
	// Total is how many requests were accepted into the batch.
	Total int64 `json:"total"`
	// Queued have not run yet (waiting for their turn, or released to a
	// worker); Waiting wait for the budget, a 429's pause or a retry;
	// Running are being sent; Done completed; Failed failed; Cancelled were
	// stopped by a cancel before they ran.
	Queued    int64 `json:"queued"`
	Waiting   int64 `json:"waiting"`
	Running   int64 `json:"running"`
	Done      int64 `json:"done"`
	Failed    int64 `json:"failed"`
	Cancelled int64 `json:"cancelled"`
	// CancelRequested is set once the batch was cancelled.
	CancelRequested bool `json:"cancel_requested"`
	// Rate is the requests ended per second since the first one started.
	Rate float64 `json:"rate"`
	// CreatedAt is the first submission, StartedAt the first run, LastAt
	// the latest end; EstimatedFinish extrapolates Rate (zero when unknown
	// or finished).
	CreatedAt       time.Time `json:"created_at,omitzero"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	LastAt          time.Time `json:"last_at,omitzero"`
	EstimatedFinish time.Time `json:"estimated_finish,omitzero"`
}

// Finished reports whether every request of the batch has ended.
func (s BatchStatus) Finished() bool { return s.Done+s.Failed+s.Cancelled >= s.Total }

// Batches reads and cancels batches.
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
func (b *Batches) Status(ctx context.Context, vendor, credential, id string) (BatchStatus, error) {
	if vendor == "" || credential == "" {
		return BatchStatus{}, ErrBatchCredential
	}
	if id == "" {
		return BatchStatus{}, ErrBatchNotFound
	}
	m, err := b.rdb.HGetAll(ctx, b.keys.batch(vendor, credential, id)).Result()
	if err != nil {
		return BatchStatus{}, fmt.Errorf("requests: batch %s: %w", id, err)
	}
	if len(m) == 0 {
		return BatchStatus{}, ErrBatchNotFound
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(m[k], 10, 64); return v }
	t := func(k string) time.Time {
		if v := n(k); v > 0 {
			return time.UnixMilli(v).UTC()
		}
		return time.Time{}
	}
	s := BatchStatus{ID: id, Vendor: vendor, Credential: credential, Total: n("total"), Queued: n("queued"), Waiting: n("waiting"), Running: n("running"),
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
func (j Jobs) BatchStatus(ctx context.Context, vendor, credential, id string) (BatchStatus, error) {
	return j.Batches.Status(ctx, vendor, credential, id)
}

// CancelBatch is Batches.Cancel.
func (j Jobs) CancelBatch(ctx context.Context, vendor, credential, id string) error {
	return j.Batches.Cancel(ctx, vendor, credential, id)
}
