package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/tokenrelay/tokenrelay/secret"
)

// decoder fills a Config from a parsed YAML tree, expanding ${NAME} in
// scalar values as it goes. It does the work of yaml.v3's decoder with
// KnownFields itself, because that one cannot name a field by its path,
// stops being strict inside custom unmarshalers (Node.Decode forgets
// KnownFields), and would need secret.Value to implement yaml.Unmarshaler.
// Walking the tree here gives every problem its path and line, reports
// them all at once, and never echoes a secret.
type decoder struct {
	lookup func(string) (string, bool)
	p      *problems
	// present holds the paths the file sets to a non-null value.
	present map[string]bool
	// budget bounds the nodes visited, so that aliases of aliases cannot
	// make a small file expand without end.
	budget int
}

var (
	secretType   = reflect.TypeFor[secret.Value]()
	durationType = reflect.TypeFor[Duration]()
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	n, ok := d.enter(n, path, v)
	if !ok {
		return
	}
	switch {
	case v.Type() == secretType || v.Type() == durationType:
		d.scalarValue(n, path, v)
	case v.Kind() == reflect.Struct:
		d.structure(n, path, v)
	case v.Kind() == reflect.Map:
		d.mapping(n, path, v)
	case v.Kind() == reflect.Slice:
		d.sequence(n, path, v)
	default:
		d.scalarValue(n, path, v)
	}
}

// enter follows n's aliases, counts it against the node budget and
// records the line and presence of the field at path. It returns the node
// to decode into v, or false when there is none: over budget, a document
// (decoded here), or null (like an absent field: the default applies).
func (d *decoder) enter(n *yaml.Node, path string, v reflect.Value) (*yaml.Node, bool) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.p.addAt("", n.Line, "too many nodes once aliases are expanded (simplify the file)")
		}
		return nil, false
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			d.decode(n.Content[0], path, v)
		}
		return nil, false
	}
	if path != "" {
		if _, ok := d.p.lines[path]; !ok {
			d.p.lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil, false
	}
	d.present[path] = true
	return n, true
}

// scalarValue sets v, a secret, duration, string, int, bool or float,
// from the scalar n.
func (d *decoder) scalarValue(n *yaml.Node, path string, v reflect.Value) {
	s, ok := d.scalar(n, path)
	if !ok {
		return
	}
	var problem string
	switch {
	case v.Type() == secretType:
		v.Set(reflect.ValueOf(secret.New(s)))
	case v.Type() == durationType:
		if dur, err := parseDuration(s); err != nil {
			problem = err.Error()
		} else {
			v.SetInt(int64(dur))
		}
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		problem = setNumber(v, s, "is not a whole number")
	case v.Kind() == reflect.Bool:
		if b, err := strconv.ParseBool(strings.TrimSpace(s)); err != nil {
			problem = "is not true or false"
		} else {
			v.SetBool(b)
		}
	case v.Kind() == reflect.Float64:
		problem = setNumber(v, s, "is not a number (use e.g. 0.5)")
	default:
		panic(fmt.Sprintf("config: no decoding for %s at %s", v.Type(), path))
	}
	if problem != "" {
		d.p.add(path, "%s %s", d.p.show(path, s), problem)
	}
}

// setNumber sets the int or float v from s, or returns problem.
func setNumber(v reflect.Value, s, problem string) string {
	s = strings.TrimSpace(s)
	if v.Kind() == reflect.Int {
		i, err := strconv.ParseInt(s, 10, 0)
		if err != nil {
			return problem
		}
		v.SetInt(i)
		return ""
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return problem
	}
	v.SetFloat(f)
	return ""
}

// describe names a node's kind for "must be X (got Y)" messages, without
// its value.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

// scalar returns the expanded text of a scalar node. Its messages never
// quote the text, so it serves secret fields too.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.p.add(path, "must be a single value (got %s)", describe(n))
		return "", false
	}
	s, refs, missing, bad := expand(n.Value, d.lookup)
	if len(refs) > 0 {
		d.p.expanded[path] = unmask(n.Value)
		d.p.refs[path] = refs
	}
	switch {
	case bad != "":
		d.p.add(path, "%s", bad)
		return "", false
	case len(missing) == 1:
		d.p.add(path, "environment variable %s is not set (export it, or remove the field)", missing[0])
		return "", false
	case len(missing) > 1:
		d.p.add(path, "environment variables %s are not set (export them, or remove the field)", strings.Join(missing, ", "))
		return "", false
	}
	return s, true
}

// References are masked before the YAML is parsed and expanded after.
// Masking is needed because "{" and "}" are YAML structure in a flow
// mapping, so the natural "{id: c1, client_secret: ${SECRET}}" would not
// parse. mask turns ${NAME} into refOpen NAME refClose, and the escape
// $${NAME} into literalOpen NAME literalClose (or a lone $${ into
// literalOpen), using runes from Unicode's private use area that YAML
// takes as plain text anywhere. Only the reference is rewritten, never
// replaced by its value, so an environment value still cannot become YAML
// structure.
const (
	refOpen      = '\uE000'
	refClose     = '\uE001'
	literalOpen  = '\uE002'
	literalClose = '\uE003'
)

func isMaskRune(r rune) bool { return r >= refOpen && r <= literalClose }

// mask rewrites the references in a YAML file, refusing a file that
// already holds one of the masking runes.
func mask(data []byte) ([]byte, error) {
	if i := bytes.IndexFunc(data, isMaskRune); i >= 0 {
		line := 1 + bytes.Count(data[:i], []byte("\n"))
		return nil, &ValidationError{Problems: []Problem{{Line: line, Message: "holds a character reserved for ${…} references (U+E000 to U+E003); remove it"}}}
	}
	if !bytes.Contains(data, []byte("${")) {
		return data, nil
	}
	// ref returns the length of the NAME} after a ${, or 0.
	ref := func(rest []byte) int {
		end := bytes.IndexByte(rest, '}')
		if end < 0 || !validEnvName(string(rest[:end])) {
			return 0
		}
		return end + 1
	}
	var b bytes.Buffer
	for i := 0; i < len(data); {
		rest := data[i:]
		switch {
		case bytes.HasPrefix(rest, []byte("$${")):
			b.WriteRune(literalOpen)
			i += 3
			if n := ref(data[i:]); n > 0 {
				b.Write(data[i : i+n-1])
				b.WriteRune(literalClose)
				i += n
			}
		case bytes.HasPrefix(rest, []byte("${")):
			n := ref(rest[2:])
			if n == 0 {
				// Left as it is: expand reports it if it is in a value.
				b.WriteString("${")
				i += 2
				continue
			}
			b.WriteRune(refOpen)
			b.Write(rest[2 : 2+n-1])
			b.WriteRune(refClose)
			i += 2 + n
		default:
			b.WriteByte(data[i])
			i++
		}
	}
	return b.Bytes(), nil
}

// unmask turns a masked value back into the text written in the file.
func unmask(s string) string {
	return strings.NewReplacer(string(refOpen), "${", string(refClose), "}", string(literalOpen), "$${", string(literalClose), "}").Replace(s)
}

// expand replaces each masked ${NAME} in s with the variable's value, and
// each $${ with ${. It returns the variables referenced, those not set, and
// a message (that does not quote s) when s has a malformed reference.
func expand(s string, lookup func(string) (string, bool)) (out string, refs, missing []string, bad string) {
	if strings.Contains(s, "${") {
		return "", nil, nil, `has a "${" that is not a reference (write ${NAME} with letters, digits and _, or $${ for a literal ${)`
	}
	if !strings.ContainsFunc(s, isMaskRune) {
		return s, nil, nil, ""
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch r {
		case literalOpen:
			b.WriteString("${")
		case literalClose:
			b.WriteString("}")
		case refOpen:
			end := strings.IndexRune(s[i:], refClose)
			if end < 0 || !validEnvName(s[i+size:i+end]) {
				// Only a YAML escape such as "\uE000" can get here.
				return "", refs, nil, "holds a character reserved for ${…} references (U+E000 to U+E003); remove it"
			}
			name := s[i+size : i+end]
			refs = append(refs, name)
			if val, ok := lookup(name); ok {
				b.WriteString(val)
			} else if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
			size = end + utf8.RuneLen(refClose)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String(), refs, missing, ""
}

func validEnvName(name string) bool {
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for _, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

type pair struct{ key, value *yaml.Node }

// pairs lists a mapping's entries with YAML merge keys ("<<: *base")
// resolved: an entry written in the mapping wins over a merged one, and an
// earlier merged mapping over a later one. It reports keys that are not
// plain values or are written twice.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge") {
			merged = append(merged, d.merge(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.p.addAt(path, k.Line, "keys must be plain names (got %s)", describe(k))
			continue
		}
		k.Value = unmask(k.Value) // keys are names, never expanded
		if first, dup := lines[k.Value]; dup {
			d.p.addAt(join(path, k.Value), k.Line, "written twice (lines %d and %d); keep one", first, k.Line)
			continue
		}
		lines[k.Value] = k.Line
		own = append(own, pair{k, v})
	}
	for _, m := range merged {
		if _, ok := lines[m.key.Value]; !ok {
			lines[m.key.Value] = m.key.Line
			own = append(own, m)
		}
	}
	return own
}

// merge returns the entries a merge key's value brings in.
func (d *decoder) merge(v *yaml.Node, path string) []pair {
	for v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if d.budget--; d.budget < 0 {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.pairs(v, path)
	case yaml.SequenceNode:
		var all []pair
		for _, item := range v.Content {
			all = append(all, d.merge(item, path)...)
		}
		return all
	default:
		d.p.addAt(path, v.Line, "a merge key (<<) must refer to a mapping")
		return nil
	}
}

// structure decodes a mapping into a struct, refusing unknown fields.
func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	fields := yamlFields(v.Type())
	if n.Kind != yaml.MappingNode && path == "" {
		d.p.addAt("", n.Line, "the file must be a mapping of sections (got %s): %s", describe(n), strings.Join(fieldNames(fields), ", "))
		return
	}
	if n.Kind != yaml.MappingNode {
		d.p.add(path, "must be a mapping of fields (got %s)", describe(n))
		return
	}
	for _, kv := range d.pairs(n, path) {
		key := kv.key.Value
		i, ok := fields[key]
		if !ok {
			d.p.addAt(join(path, key), kv.key.Line, "%s", unknownField(key, fields))
			continue
		}
		d.keyLine(join(path, key), kv.key)
		d.decode(kv.value, join(path, key), v.Field(i))
	}
}

// keyLine makes the line of an entry's key the line of its field: for a
// nested mapping that is the line naming it, not that of its first entry.
func (d *decoder) keyLine(path string, key *yaml.Node) {
	if _, ok := d.p.lines[path]; !ok {
		d.p.lines[path] = key.Line
	}
}

// mapping decodes a mapping into a map with string keys.
func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.p.add(path, "must be a mapping of names to entries (got %s)", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, kv := range d.pairs(n, path) {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.keyLine(join(path, kv.key.Value), kv.key)
		d.decode(kv.value, join(path, kv.key.Value), elem)
		v.SetMapIndex(reflect.ValueOf(kv.key.Value).Convert(v.Type().Key()), elem)
	}
}

// sequence decodes a list into a slice.
func (d *decoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.p.add(path, "must be a list (got %s)", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
	}
	v.Set(s)
}

// yamlFields maps the YAML names of a struct's fields to their indexes.
func yamlFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		fields[name] = i
	}
	return fields
}

// fieldNames lists the YAML names of fields in the struct's order.
func fieldNames(fields map[string]int) []string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return fields[names[i]] < fields[names[j]] })
	return names
}

// unknownField says that key is not a field, suggesting the nearest one
// and listing them all.
func unknownField(key string, fields map[string]int) string {
	names := fieldNames(fields)
	hint := ""
	best := 3 // suggest only names at most 2 edits away
	for _, name := range names {
		if dist := editDistance(strings.ToLower(key), name); dist < best {
			best, hint = dist, fmt.Sprintf("; did you mean %q?", name)
		}
	}
	return fmt.Sprintf("unknown field %q%s (allowed: %s)", key, hint, strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
