package adminclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
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

// batchPath is the path of a credential's batch, plus suffix.
func batchPath(vendor, credential, id, suffix string) string {
	return "/admin/batches/" + url.PathEscape(id) + suffix + "?" +
		url.Values{"vendor": {vendor}, "credential": {credential}}.Encode()
}

// BatchStatus returns the progress of the batch id of a credential (a
// batch belongs to one vendor and credential).
func (c *Client) BatchStatus(ctx context.Context, vendor, credential, id string) (requests.BatchStatus, error) {
	var out requests.BatchStatus
	err := c.do(ctx, http.MethodGet, batchPath(vendor, credential, id, ""), nil, &out)
	return out, err
}

// CancelBatch stops what has not run of the batch id of a credential and
// returns its status.
func (c *Client) CancelBatch(ctx context.Context, vendor, credential, id string) (requests.BatchStatus, error) {
	var out requests.BatchStatus
	err := c.do(ctx, http.MethodPost, batchPath(vendor, credential, id, "/cancel"), nil, &out)
	return out, err
}
