package adminclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/requests"
)

// SubmitRequest submits one request job; it returns its id once accepted.
func (c *Client) SubmitRequest(ctx context.Context, r jobs.Request) (string, error) {
	body, err := jsonBody(r)
	if err != nil {
		return "", err
	}
	var out requests.Accepted
	if err := c.do(ctx, http.MethodPost, "/admin/requests", body, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// BatchStatus returns a batch's progress.
func (c *Client) BatchStatus(ctx context.Context, id string) (requests.BatchStatus, error) {
	var out requests.BatchStatus
	err := c.do(ctx, http.MethodGet, "/admin/batches/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CancelBatch stops what has not run of a batch and returns its status.
func (c *Client) CancelBatch(ctx context.Context, id string) (requests.BatchStatus, error) {
	var out requests.BatchStatus
	err := c.do(ctx, http.MethodPost, "/admin/batches/"+url.PathEscape(id)+"/cancel", nil, &out)
	return out, err
}
