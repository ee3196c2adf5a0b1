package requests

import (
	"context"
	"fmt"

	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Pages takes over the outcome of the page requests of syncs (a
// jobs.Request with Sync set; package syncs): such a request is sent as any
// other, through the budget and the feeder's fairness, but its outcome
// goes to the sync instead of a request event. The request is marked
// ended only after Pages returns nil, so a worker that dies in between
// sends the page again and Pages sees it twice (it must be idempotent).
type Pages interface {
	// PageDone records the vendor's answer (not a 4xx or 5xx) to a page.
	PageDone(ctx context.Context, r jobs.Request, ans vendors.Answer) error
	// PageFailed ends the page's sync: its request failed for good.
	PageFailed(ctx context.Context, r jobs.Request, class, message string) error
}

// pageDone hands a sync page's answer to Pages, then ends the request.
func (h *Handler) pageDone(ctx context.Context, r jobs.Request, rec record, ans vendors.Answer) error {
	if h.d.Pages == nil {
		return h.pageFailed(ctx, r, rec, "invalid", "no sync runner is configured for this page")
	}
	if err := h.d.Pages.PageDone(ctx, r, ans); err != nil {
		return fmt.Errorf("requests: page %s of sync %s: %w", r.ID, r.Sync, err)
	}
	if err := h.transition(ctx, r, rec, "done", nil); err != nil {
		return err
	}
	h.d.Metrics.outcome(r.Vendor, OutcomeCompleted)
	return nil
}

// pageFailed tells Pages that a page failed for good, then ends the request.
func (h *Handler) pageFailed(ctx context.Context, r jobs.Request, rec record, class, msg string) error {
	if h.d.Pages != nil {
		if err := h.d.Pages.PageFailed(ctx, r, class, msg); err != nil {
			return fmt.Errorf("requests: fail page %s of sync %s: %w", r.ID, r.Sync, err)
		}
	}
	state, outcome := "failed", OutcomeFailed
	if class == "cancelled" {
		state, outcome = "cancelled", OutcomeCancelled
	}
	if err := h.transition(ctx, r, rec, state, nil); err != nil {
		return err
	}
	h.d.Metrics.outcome(r.Vendor, outcome)
	h.d.Logger.Info().Str("request", r.ID).Str("sync", r.Sync).Str("error_class", class).Msg("sync page failed")
	return nil
}
