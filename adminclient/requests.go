package adminclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// RequestJob is a request job as POST /admin/requests takes it: a
// jobs.Request, whose Kind is "vendor:request". (This package does not
// import jobs, which holds the worker's handlers too.)
type RequestJob interface {
	Kind() string
}

// kindRequest is jobs.TypeVendorRequest; a task type, once shipped, is
// never renamed.
const kindRequest = "vendor:request"

// SubmitRequest submits one request job; it returns its id once accepted.
func (c *Client) SubmitRequest(ctx context.Context, r RequestJob) (string, error) {
	if k := r.Kind(); k != kindRequest {
		return "", fmt.Errorf("adminclient: submit a %q, not a request job (%s)", k, kindRequest)
	}
	body, err := jsonBody(r)
	if err != nil {
		return "", err
	}
	var out Accepted
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
func (c *Client) BatchStatus(ctx context.Context, vendor, credential, id string) (BatchStatus, error) {
	var out BatchStatus
	err := c.do(ctx, http.MethodGet, batchPath(vendor, credential, id, ""), nil, &out)
	return out, err
}

// CancelBatch stops what has not run of the batch id of a credential and
// returns its status.
func (c *Client) CancelBatch(ctx context.Context, vendor, credential, id string) (BatchStatus, error) {
	var out BatchStatus
	err := c.do(ctx, http.MethodPost, batchPath(vendor, credential, id, "/cancel"), nil, &out)
	return out, err
}
