package config

// ValidID reports whether s is what vendor names, credential ids and batch
// ids look like ([A-Za-z0-9_-], 1 to 64 characters), for routes that take
// one from a URL path.
func ValidID(s string) bool { return validID.MatchString(s) }
