package redoxlegacy

import "time"

// RefreshTokenIdleLimit is how long a Redox legacy refresh token stays
// usable unused: Redox's refresh tokens "expire after 7 days of inactivity".
const RefreshTokenIdleLimit = 7 * 24 * time.Hour

// ReauthenticateMargin is how long before the idle limit ReauthenticateBy
// falls: a day, so that a renewal planned at the last moment still has a
// day of retries (backoff, a vendor outage) before the refresh token dies.
const ReauthenticateMargin = 24 * time.Hour

// ReauthenticateBy is when a credential whose refresh token was last used
// (issued, since every use rotates it) at lastUse must be renewed at the
// latest, for its refresh token to be still good: lastUse +
// RefreshTokenIdleLimit - ReauthenticateMargin. A scheduler can cap a
// redox-legacy credential's next renewal with it; the pipeline's usual pace
// (two thirds of 24 hours) is far inside it. Missing it is not fatal: the
// adapter in ModeRefresh then re-authenticates with key and secret, at the
// cost of one refused refresh call.
func ReauthenticateBy(lastUse time.Time) time.Time {
	return lastUse.Add(RefreshTokenIdleLimit - ReauthenticateMargin)
}
