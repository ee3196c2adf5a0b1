package syncs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/vendors"
)

// page is what a sync reads of one answer.
type page struct {
	// resources is a JSON array: a Bundle's entry resources, or the items
	// of a non-FHIR answer.
	resources json.RawMessage
	count     int
	// total is the search's total when the vendor says it, else -1.
	total int
	// next is the next page's link as the vendor gave it ("" at the end).
	next string
	// served is the vendor's clock when it answered: the Bundle's
	// meta.lastUpdated, else the Date header; zero when neither is given.
	served time.Time
}

// bundle is what a sync reads of a FHIR searchset Bundle.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Meta         struct {
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Total *int `json:"total"`
	Link  []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

// listKeys are the fields a non-FHIR answer may hold its items in.
var listKeys = []string{"data", "items", "results", "entries", "entry"}

// parsePage reads an answer: a FHIR Bundle (its next link from
// Bundle.link[relation=next]), or a JSON array or an object holding one
// (listKeys), whose next page an RFC 8288 Link header names.
func parsePage(ans vendors.Answer) (page, error) {
	p := page{total: -1}
	body := bytes.TrimSpace(ans.Body)
	switch {
	case len(body) == 0:
		return p, errors.New("the page is empty")
	case body[0] == '[':
		p.resources = body
	case body[0] == '{':
		var b bundle
		if err := json.Unmarshal(body, &b); err != nil {
			return p, fmt.Errorf("the page is not a JSON object the sync can read: %w", err)
		}
		if b.ResourceType == "Bundle" {
			return fhirPage(b, ans.Header)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return p, fmt.Errorf("the page is not a JSON object: %w", err)
		}
		for _, k := range listKeys {
			if v := bytes.TrimSpace(obj[k]); len(v) > 0 && v[0] == '[' {
				p.resources = v
				break
			}
		}
		if p.resources == nil {
			return p, errors.New("the page is neither a FHIR Bundle nor a list of items")
		}
	default:
		return p, errors.New("the page is not JSON")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(p.resources, &items); err != nil {
		return p, fmt.Errorf("the page's items are not a JSON array: %w", err)
	}
	p.count = len(items)
	p.next = linkNext(ans.Header.Values("Link"))
	p.served = dateOf(ans.Header)
	return p, nil
}

func fhirPage(b bundle, h http.Header) (page, error) {
	p := page{total: -1}
	if b.Total != nil {
		p.total = *b.Total
	}
	items := make([]json.RawMessage, 0, len(b.Entry))
	for _, e := range b.Entry {
		if len(e.Resource) > 0 {
			items = append(items, e.Resource)
		}
	}
	raw, err := json.Marshal(items)
	if err != nil {
		return p, fmt.Errorf("the Bundle's resources: %w", err)
	}
	p.resources, p.count = raw, len(items)
	for _, l := range b.Link {
		if l.Relation == "next" {
			p.next = l.URL
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, b.Meta.LastUpdated); err == nil {
		p.served = t
	} else {
		p.served = dateOf(h)
	}
	return p, nil
}

func dateOf(h http.Header) time.Time {
	t, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return t
}

// linkNext returns the target of the rel="next" link of RFC 8288 Link
// header values, "" when there is none.
func linkNext(values []string) string {
	for _, v := range values {
		for v != "" {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				break
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			target, rest := v[1:end], v[end+1:]
			params, after, _ := strings.Cut(rest, ",")
			// A quoted parameter may hold a comma: take the rest of it.
			for strings.Count(params, `"`)%2 == 1 && after != "" {
				var more string
				more, after, _ = strings.Cut(after, ",")
				params += "," + more
			}
			for _, param := range strings.Split(params, ";") {
				name, val, ok := strings.Cut(strings.TrimSpace(param), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(name), "rel") {
					continue
				}
				for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(val), `"`)) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
			v = after
		}
	}
	return ""
}

// errOffBase: a next link leaves the vendor's base URL.
var errOffBase = errors.New("the next link leaves the vendor's base URL")

// onBase resolves a next link against the vendor's base URL and returns
// the path (relative to the base, as a request job names it) and query of
// the page, refusing a link to another scheme, host or port, one with user
// information or a fragment, or one outside the base path.
func onBase(base, next string) (string, url.Values, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", nil, fmt.Errorf("the vendor's base URL: %w", err)
	}
	u, err := url.Parse(strings.TrimSpace(next))
	if err != nil {
		return "", nil, fmt.Errorf("the next link is not a URL: %w", err)
	}
	u = b.ResolveReference(u)
	basePath := b.EscapedPath()
	if !strings.HasSuffix(basePath, "/") {
		basePath += "/"
	}
	switch {
	case u.Scheme != b.Scheme, !strings.EqualFold(u.Host, b.Host), u.User != nil, u.Fragment != "":
		return "", nil, fmt.Errorf("%w (to %s://%s)", errOffBase, u.Scheme, u.Host)
	case !strings.HasPrefix(u.EscapedPath(), basePath):
		return "", nil, fmt.Errorf("%w (outside its path)", errOffBase)
	}
	rel := strings.TrimPrefix(u.EscapedPath(), basePath)
	for seg := range strings.SplitSeq(rel, "/") {
		if s, _ := url.PathUnescape(seg); s == ".." || s == "." {
			return "", nil, fmt.Errorf("%w (a dot segment)", errOffBase)
		}
	}
	if rel == "" {
		return "", nil, fmt.Errorf("%w (to the base itself)", errOffBase)
	}
	return rel, u.Query(), nil
}
