package config

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
)

// Entry is one effective setting with its origin.
type Entry struct {
	Key    string // canonical YAML key ("P", "path.model")
	Value  any    // string, float64, int, bool, []string, []int, []float64 or []Slot
	Origin Origin
}

// Entries lists every setting in display order. The values are copies.
func (c *Config) Entries() []Entry {
	out := make([]Entry, 0, len(keys))
	for _, k := range keys {
		out = append(out, Entry{Key: k.name, Value: cloneValue(k.get(c)), Origin: c.Origin(k.name)})
	}
	return out
}

// Origin says where the effective value of key (a canonical YAML key such as
// "P" or "path.model") came from; keys never set by any source, and unknown
// keys, report SourceDefault.
func (c *Config) Origin(key string) Origin {
	if c == nil {
		return Origin{}
	}
	return c.origins[key]
}

// Print writes the effective configuration for `gopruner config --print`, one
// `key = value  (source)` line per key, aligned.
func (c *Config) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	file := c.File
	if file == "" {
		file = "none"
	}
	fmt.Fprintf(tw, "# config file: %s\n", file)
	for _, e := range c.Entries() {
		fmt.Fprintf(tw, "%s\t= %s\t (%s)\n", e.Key, displayValue(e.Value), e.Origin)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing configuration: %w", err)
	}
	return nil
}

// displayValue is formatValue with unset values made visible.
func displayValue(v any) string {
	switch t := v.(type) {
	case string:
		if t == "" {
			return "(not set)"
		}
	case []int:
		if t == nil {
			return "(not set)"
		}
	case []float64:
		if t == nil {
			return "(not set)"
		}
	}
	return formatValue(v)
}

// formatValue writes a value the way the flags and the file accept it back.
func formatValue(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	case int:
		return strconv.Itoa(t)
	case bool:
		return strconv.FormatBool(t)
	case []string:
		return "[" + strings.Join(t, ", ") + "]"
	case []int:
		return joinList(t, strconv.Itoa)
	case []float64:
		return joinList(t, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) })
	case []Slot:
		return joinList(t, func(s Slot) string { return string(s) })
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func joinList[T any](xs []T, f func(T) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = f(x)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// exportValue is a value for YAML and JSON dumps: nil where the key is unset,
// so that the dump loads back to the same configuration.
func exportValue(v any) any {
	switch t := v.(type) {
	case string:
		if t == "" {
			return nil
		}
	case []int:
		if t == nil {
			return nil
		}
	case []float64:
		if t == nil {
			return nil
		}
	case []string:
		if t == nil {
			return []string{}
		}
	}
	return v
}

// WriteYAML writes the effective configuration as a Pruning.yaml in the old
// tool's layout (path: section, flat keys), each line commented with its
// source. Loading it back yields the same settings.
func (c *Config) WriteYAML(w io.Writer) error {
	root := &yaml.Node{Kind: yaml.MappingNode,
		HeadComment: "Effective gopruner configuration; each comment gives the value's source."}
	var pathNode *yaml.Node
	for _, k := range keys {
		vn := &yaml.Node{}
		if err := vn.Encode(exportValue(k.get(c))); err != nil {
			return fmt.Errorf("encoding %s: %w", k.name, err)
		}
		if vn.Kind == yaml.SequenceNode {
			vn.Style = yaml.FlowStyle
		}
		vn.LineComment = c.Origin(k.name).String()
		kn := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k.leaf()}
		if k.inPath() {
			if pathNode == nil {
				pathNode = &yaml.Node{Kind: yaml.MappingNode}
				root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "path"}, pathNode)
			}
			pathNode.Content = append(pathNode.Content, kn, vn)
			continue
		}
		root.Content = append(root.Content, kn, vn)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return fmt.Errorf("writing configuration as YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("writing configuration as YAML: %w", err)
	}
	return nil
}

// jsonDump is the shape of WriteJSON's output.
type jsonDump struct {
	File    string            `json:"file"`
	Config  map[string]any    `json:"config"`
	Sources map[string]string `json:"sources"`
}

// WriteJSON writes {"file": ..., "config": {...}, "sources": {key: origin}},
// with config nested like the file (path.model under "path").
func (c *Config) WriteJSON(w io.Writer) error {
	d := jsonDump{File: c.File, Config: map[string]any{}, Sources: map[string]string{}}
	flat := map[string]any{}
	for _, k := range keys {
		flat[k.name] = exportValue(k.get(c))
		d.Sources[k.name] = c.Origin(k.name).String()
	}
	for name, v := range flat {
		if parent, leaf, ok := strings.Cut(name, "."); ok {
			sub, _ := d.Config[parent].(map[string]any)
			if sub == nil {
				sub = map[string]any{}
				d.Config[parent] = sub
			}
			sub[leaf] = v
			continue
		}
		d.Config[name] = v
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("writing configuration as JSON: %w", err)
	}
	return nil
}
