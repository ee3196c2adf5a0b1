package budget

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
)

// MaxPerClientRows caps the accounts Overview lists for a vendor that
// limits each OAuth client: the paused ones first, then the busiest.
const MaxPerClientRows = 50

// maxIndexRead is the index entries one Overview reads at most, most recent
// first; past it, the count of a vendor's accounts not shown is a lower
// bound.
const maxIndexRead = 10_000

// Row is one line of the budget overview operators see. Its fields are
// those of the operator page's row, in the same order.
type Row struct {
	// Account is the vendor instance name, or "vendor/credential" for a
	// vendor that limits each OAuth client.
	Account     string
	Limit       int
	Per         time.Duration
	Used        int
	Remaining   int
	PausedUntil time.Time // zero when not paused
	// More, on the last row of a vendor that limits each OAuth client, is
	// how many more of its accounts were active within the window but are
	// not shown; MoreAtLeast says the count is a lower bound.
	More        int
	MoreAtLeast bool
	// Idle marks the one row of a vendor that limits each OAuth client
	// when none of its accounts was used within the window: Account is
	// the vendor instance name, Limit and Per what each account has.
	Idle bool
}

// Overview returns the budget of each configured vendor with a rate limit,
// by vendor name: one row per vendor instance, or, for a vendor that limits
// each OAuth client (PerClient), those of its accounts the index of used
// accounts lists within the vendor's window. It so costs O(accounts in
// use), never a scan of the credentials: a credential that has not spent
// its budget lately is at 0 and has nothing to show. now is on the
// budget's clock (Options.Clock).
//
// Of a per-client vendor's accounts it reads the status of the most recent
// 2×MaxPerClientRows (paused accounts lead the index, and the busiest write
// it every few seconds, so they are among them) and lists the paused ones
// first, then by use, up to MaxPerClientRows, with how many more there are
// on the vendor's last row.
func (b *Budget) Overview(ctx context.Context, vendors map[string]config.Vendor, now time.Time) ([]Row, error) {
	names := make([]string, 0, len(vendors))
	var longest time.Duration // the longest window of a per-client vendor
	for name, v := range vendors {
		if v.RateLimit.Limit <= 0 {
			continue
		}
		names = append(names, name)
		if PerClient(string(v.Kind)) {
			longest = max(longest, LimitOf(v).Per)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	sort.Strings(names)
	var active []Activity
	truncated := false
	if longest > 0 {
		list, total, err := b.Accounts(ctx, now.Add(-longest), maxIndexRead)
		if err != nil {
			return nil, err
		}
		active, truncated = list, total > len(list)
	}
	status := func(account string, lim Limit) (Row, error) {
		st, err := b.Status(ctx, account, lim)
		if err != nil {
			return Row{}, err
		}
		return Row{Account: account, Limit: st.Limit, Per: st.Per,
			Used: st.Used, Remaining: st.Remaining, PausedUntil: st.PausedUntil}, nil
	}
	var out []Row
	for _, name := range names {
		v := vendors[name]
		lim := LimitOf(v)
		if !PerClient(string(v.Kind)) {
			row, err := status(Account(name, ""), lim)
			if err != nil {
				return nil, err
			}
			out = append(out, row)
			continue
		}
		// This vendor's accounts used within its own window, most recent
		// (and so paused) first.
		since := now.Add(-lim.Per)
		var used []string
		for _, a := range active {
			if _, ok := CredentialOf(a.Account, name); ok && !a.Last.Before(since) {
				used = append(used, a.Account)
			}
		}
		if len(used) == 0 {
			out = append(out, Row{Account: name, Limit: lim.Requests, Per: lim.Per, Idle: true})
			continue
		}
		rows := make([]Row, 0, min(len(used), 2*MaxPerClientRows))
		for _, account := range used[:cap(rows)] {
			row, err := status(account, lim)
			if err != nil {
				return nil, err
			}
			rows = append(rows, row)
		}
		slices.SortStableFunc(rows, func(x, y Row) int {
			if px, py := !x.PausedUntil.IsZero(), !y.PausedUntil.IsZero(); px != py {
				if px {
					return -1
				}
				return 1
			}
			if x.Used != y.Used {
				return y.Used - x.Used
			}
			return strings.Compare(x.Account, y.Account)
		})
		rows = rows[:min(len(rows), MaxPerClientRows)]
		last := &rows[len(rows)-1]
		last.More = len(used) - len(rows)
		last.MoreAtLeast = truncated && last.More > 0
		out = append(out, rows...)
	}
	return out, nil
}
