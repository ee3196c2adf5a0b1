package client

// EventsSeen is how many renewal events s has handled, acted on or not.
func EventsSeen(s *TokenSource) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eventsSeen
}

// Renewals is how many renewal events s has acted on.
func Renewals(s *TokenSource) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewals
}

// Waiting is how many callers have waited on the request in flight, if any.
func Waiting(s *TokenSource) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight == nil {
		return 0
	}
	return s.inflight.waiters
}
