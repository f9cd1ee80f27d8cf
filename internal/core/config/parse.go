package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The parsers below return a problem string instead of an error: the caller
// knows where the value came from (file line, env var, flag) and wraps the
// problem in an *Error that names it. A problem reads "<value> <what is wrong>".

// describe is the expected type, for "must be ..." messages.
func (k *spec) describe() string {
	switch k.kind {
	case kString:
		return "a string"
	case kEnum:
		return "one of " + strings.Join(k.enum, ", ")
	case kDevice:
		return "a device (cpu, cuda or cuda:N)"
	case kFloat:
		return "a number"
	case kInt:
		return "an integer"
	case kBool:
		return "true or false"
	case kStrings:
		return "a list of module paths"
	case kInts:
		return "a list of integers"
	case kFloats:
		return "a list of numbers"
	case kSlots:
		return "a list of device slots"
	}
	return "a value"
}

// parseString converts text (a flag, an environment variable, a YAML scalar)
// to the key's canonical type and checks its range. Lists are comma-separated,
// optionally in brackets as YAML's flow style writes them.
func parseString(k *spec, s string) (any, string) {
	var v any
	if k.kind.isList() {
		items := splitList(s)
		var p string
		if v, p = parseItems(k, items); p != "" {
			return nil, p
		}
	} else {
		var p string
		if v, p = parseScalar(k, s); p != "" {
			return nil, p
		}
	}
	return v, checkValue(k, v)
}

func checkValue(k *spec, v any) string {
	if k.check == nil {
		return ""
	}
	if p := k.check(v); p != "" {
		return shorten(formatValue(v)) + " " + p
	}
	return ""
}

// clip quotes user text for a message, shortened: a message is one line,
// whatever was pasted into the value.
func clip(s string) string { return strconv.Quote(shorten(s)) }

// shorten cuts s to a length that fits in a one-line message.
func shorten(s string) string {
	const limit = 60
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func splitList(s string) []string {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
		t = strings.TrimSpace(t[1 : len(t)-1])
	}
	if t == "" {
		return []string{}
	}
	parts := strings.Split(t, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return parts
}

// parseItems builds a list value from its items' text.
func parseItems(k *spec, items []string) (any, string) {
	switch k.kind {
	case kStrings:
		out := make([]string, 0, len(items))
		for _, it := range items {
			out = append(out, strings.TrimSpace(it))
		}
		return out, ""
	case kInts:
		out := make([]int, 0, len(items))
		for i, it := range items {
			n, ok := parseInt(it)
			if !ok {
				return nil, fmt.Sprintf("%s (item %d) is not an integer", clip(it), i+1)
			}
			out = append(out, n)
		}
		return out, ""
	case kFloats:
		out := make([]float64, 0, len(items))
		for i, it := range items {
			f, ok := parseFloat(it)
			if !ok {
				return nil, fmt.Sprintf("%s (item %d) is not a number", clip(it), i+1)
			}
			out = append(out, f)
		}
		return out, ""
	case kSlots:
		out := make([]Slot, 0, len(items))
		for i, it := range items {
			sl, err := ParseSlot(it)
			if err != nil {
				return nil, fmt.Sprintf("%v (item %d)", err, i+1)
			}
			out = append(out, sl)
		}
		return out, ""
	}
	return nil, "is not " + k.describe()
}

func parseScalar(k *spec, s string) (any, string) {
	switch k.kind {
	case kString:
		return s, ""
	case kEnum:
		t := strings.TrimSpace(s)
		for _, e := range k.enum {
			if strings.EqualFold(t, e) {
				return e, ""
			}
		}
		return nil, fmt.Sprintf("%s is not %s", clip(s), k.describe())
	case kDevice:
		d, err := parseDevice(s)
		if err != nil {
			return nil, err.Error()
		}
		return d, ""
	case kFloat:
		f, ok := parseFloat(s)
		if !ok {
			return nil, fmt.Sprintf("%s is not a number", clip(s))
		}
		return f, ""
	case kInt:
		n, ok := parseInt(s)
		if !ok {
			return nil, fmt.Sprintf("%s is not an integer", clip(s))
		}
		return n, ""
	case kBool:
		b, ok := parseBool(s)
		if !ok {
			return nil, fmt.Sprintf("%s is not true or false", clip(s))
		}
		return b, ""
	}
	return nil, fmt.Sprintf("%s is not %s", clip(s), k.describe())
}

func parseFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil && isFinite(f)
}

// parseInt accepts integral floats ("8.0", "1e3") because YAML writers and
// Python's str() produce them for whole numbers.
func parseInt(s string) (int, bool) {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		return int(n), true
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int(f), true
}

// parseBool takes strconv's spellings plus YAML 1.1's yes/no/on/off, which
// the old tool's PyYAML read as booleans.
func parseBool(s string) (bool, bool) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "yes", "y", "on":
		return true, true
	case "no", "n", "off":
		return false, true
	}
	b, err := strconv.ParseBool(t)
	return b, err == nil
}

// resolve follows YAML aliases. The depth limit only guards against a
// malformed graph; yaml.v3 already rejects alias cycles.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// parseNode converts a YAML value. null means "not set" and yields (nil, "").
func parseNode(k *spec, n *yaml.Node) (any, string) {
	n = resolve(n)
	if isNull(n) {
		return nil, ""
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() == "!!bool" && (k.kind == kFloat || k.kind == kInt || k.kind == kInts || k.kind == kFloats) {
			return nil, fmt.Sprintf("%s is not %s", n.Value, k.describe())
		}
		return parseString(k, n.Value)
	case yaml.SequenceNode:
		if !k.kind.isList() {
			return nil, "is a list, want " + k.describe()
		}
		items := make([]string, 0, len(n.Content))
		for i, c := range n.Content {
			c = resolve(c)
			if c == nil || c.Kind != yaml.ScalarNode || isNull(c) {
				return nil, fmt.Sprintf("item %d is not a plain value, want %s", i+1, k.describe())
			}
			items = append(items, c.Value)
		}
		v, p := parseItems(k, items)
		if p != "" {
			return nil, p
		}
		return v, checkValue(k, v)
	case yaml.MappingNode:
		return nil, "is a mapping, want " + k.describe()
	}
	return nil, "is not " + k.describe()
}
