package config

import (
	"fmt"
	"sort"
	"strings"
)

// ValidationError is every problem found in a configuration. Parse, Load
// and Validate return one (as error) whenever a configuration is refused.
type ValidationError struct {
	// File is the configuration file, when known (Load sets it).
	File string
	// Problems are in file order; those without a line (from the
	// environment, or from a Config built in Go) come last.
	Problems []Problem
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is the field, as in "vendors.halaxy-au.kind" or
	// "credentials[0].client_secret", or the environment variable the value
	// came from, as in "TOKENRELAY_SECRET_KEY". Empty for a problem with the
	// file as a whole (e.g. it is not YAML).
	Path string
	// Line is the line in the file, or 0 when there is none.
	Line int
	// Message says what is wrong and how to fix it. It never contains a
	// secret or the value of an environment variable.
	Message string
}

// Error lists the problems one per line.
func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "config: " + e.format(e.Problems[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "config: %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(e.format(p))
	}
	return b.String()
}

func (e *ValidationError) format(p Problem) string {
	var b strings.Builder
	switch {
	case p.Line > 0 && e.File != "":
		fmt.Fprintf(&b, "%s:%d: ", e.File, p.Line)
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	case e.File != "" && p.Path == "":
		b.WriteString(e.File + ": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// problems collects what is wrong, at most one problem per field: once a
// field (or a field containing it) has a problem, later ones about it are
// consequences and would only add noise.
type problems struct {
	list []Problem
	bad  map[string]bool
	// lines maps a field path to its line in the file.
	lines map[string]int
	// labels renames a field whose value came from an environment override
	// (redis.url → REDIS_URL).
	labels map[string]string
	// expanded maps a field path whose value had ${…} references to its
	// text before expansion, and refs to the variables it referenced.
	expanded map[string]string
	refs     map[string][]string
}

func newProblems() *problems {
	return &problems{
		bad:      map[string]bool{},
		lines:    map[string]int{},
		labels:   map[string]string{},
		expanded: map[string]string{},
		refs:     map[string][]string{},
	}
}

// add records a problem with the field at path, unless that field or one
// containing it already has one.
func (p *problems) add(path, format string, args ...any) {
	if p.has(path) {
		return
	}
	p.bad[path] = true
	line := 0
	for q := path; q != ""; q = parent(q) {
		if l, ok := p.lines[q]; ok {
			line = l
			break
		}
	}
	shown := path
	if l, ok := p.labels[path]; ok {
		shown, line = l, 0
	}
	p.list = append(p.list, Problem{Path: shown, Line: line, Message: fmt.Sprintf(format, args...)})
}

// addAt records a problem at a given line (for a field that has no line of
// its own, such as an unknown one).
func (p *problems) addAt(path string, line int, format string, args ...any) {
	if p.has(path) {
		return
	}
	p.bad[path] = true
	p.list = append(p.list, Problem{Path: path, Line: line, Message: fmt.Sprintf(format, args...)})
}

// has reports whether the field at path, or one containing it, has a problem.
func (p *problems) has(path string) bool {
	for q := path; q != ""; q = parent(q) {
		if p.bad[q] {
			return true
		}
	}
	return false
}

// parent is the path of the field containing path's field: "a.b[2].c" → "a.b[2]" → "a.b" → "a".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// show renders the value of the field at path for a message: quoted as
// written in the file, never an environment variable's value.
func (p *problems) show(path, value string) string {
	if _, ok := p.labels[path]; ok {
		return "the value"
	}
	if raw, ok := p.expanded[path]; ok {
		return fmt.Sprintf("%q (after expansion)", raw)
	}
	return fmt.Sprintf("%q", value)
}

// fromEnv reports whether the value of the field at path came, in whole or
// in part, from the environment.
func (p *problems) fromEnv(path string) bool {
	_, labelled := p.labels[path]
	_, expanded := p.expanded[path]
	return labelled || expanded
}

// err is nil when nothing is wrong, else a *ValidationError.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), p.list...)
	sort.SliceStable(list, func(i, j int) bool {
		li, lj := list[i].Line, list[j].Line
		if (li == 0) != (lj == 0) {
			return lj == 0
		}
		return li < lj
	})
	return &ValidationError{Problems: list}
}

// hasWithin reports whether the field at path, one containing it or one
// it contains has a problem.
func (p *problems) hasWithin(path string) bool {
	if p.has(path) {
		return true
	}
	for q := range p.bad {
		if strings.HasPrefix(q, path+".") || strings.HasPrefix(q, path+"[") {
			return true
		}
	}
	return false
}
