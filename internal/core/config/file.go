package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds what Load reads: a Pruning.yaml is a few hundred bytes,
// and anything near this size is not one.
const maxFileSize = 1 << 20

// fileValue is one validated value from the file.
type fileValue struct {
	val     any
	line    int
	written string // the key as written, with its section path: "my_pruning.P"
}

// fileLayers are the file's values: the top level and each algorithm's
// section, by canonical key. Which section applies is decided later, once
// the algorithm is known from all sources.
type fileLayers struct {
	name     string
	top      map[string]fileValue
	sections map[string]map[string]fileValue
}

func newFileLayers(name string) *fileLayers {
	return &fileLayers{name: name, top: map[string]fileValue{}, sections: map[string]map[string]fileValue{}}
}

// effective is the top level overlaid with the section of algorithm alg.
func (f *fileLayers) effective(alg string) map[string]fileValue {
	out := make(map[string]fileValue, len(f.top))
	for k, v := range f.top {
		out[k] = v
	}
	for k, v := range f.sections[alg] {
		out[k] = v
	}
	return out
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// decodeYAML parses one YAML document. yaml.v3 reports its own syntax errors
// as errors, but a parser bug must not take the CLI down with a Go trace, so
// a panic becomes an error here too.
func decodeYAML(data []byte) (doc *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("YAML parser failure: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty file: no settings
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, errors.New("more than one YAML document (a second \"---\"); gopruner reads one")
	}
	return &n, nil
}

// parseFile validates the whole file, both algorithm sections included, and
// records every problem it finds.
func parseFile(name string, data []byte, probs *problems) *fileLayers {
	f := newFileLayers(name)
	doc, err := decodeYAML(data)
	if err != nil {
		e := &Error{Where: name, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			e.Where, e.Msg = name+":"+m[1], "invalid YAML: "+m[2]
		}
		probs.add(e)
		return f
	}
	if doc == nil {
		return f
	}
	if e := f.aliasBudget(doc); e != nil {
		probs.add(e)
		return f
	}
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return f
		}
		root = root.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		return f
	}
	if root.Kind != yaml.MappingNode {
		probs.add(&Error{Where: f.at(root), Msg: "the top level must be a mapping of keys (algorithm: ..., path: ..., P: ...)"})
		return f
	}
	f.walk(root, "", f.top, probs)
	return f
}

func (f *fileLayers) at(n *yaml.Node) string {
	if n == nil || n.Line == 0 {
		return f.name
	}
	return f.name + ":" + strconv.Itoa(n.Line)
}

// walk reads one mapping: the top level (prefix "") or an algorithm section
// (prefix "my_pruning."). Keys match case-insensitively because viper, which
// users of the old tool also met, ignores case, and P/p should both work.
func (f *fileLayers) walk(m *yaml.Node, prefix string, dest map[string]fileValue, probs *problems) {
	inSection := prefix != ""
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := resolve(m.Content[i]), m.Content[i+1]
		key, ok := f.keyName(kn, prefix, probs)
		if !ok {
			continue
		}
		written := prefix + key
		lower := strings.ToLower(key)

		if !inSection {
			if sec := sectionName(key); sec != "" {
				if !f.firstTime(seen, "section "+sec, written, kn, probs) {
					continue
				}
				secDest := map[string]fileValue{}
				f.sections[sec] = secDest
				if sv := resolve(vn); !isNull(sv) {
					if sv.Kind != yaml.MappingNode {
						probs.add(&Error{Where: f.at(sv), Key: written, Msg: "must be a mapping of the " + sec + " algorithm's keys"})
						continue
					}
					f.walk(sv, written+".", secDest, probs)
				}
				continue
			}
		}
		if lower == "path" {
			if !f.firstTime(seen, "path", written, kn, probs) {
				continue
			}
			if pv := resolve(vn); !isNull(pv) {
				if pv.Kind != yaml.MappingNode {
					probs.add(&Error{Where: f.at(pv), Key: written, Msg: "must be a mapping (model: ..., exp_save: ..., model_name: ...)"})
					continue
				}
				f.walkPath(pv, written+".", dest, probs)
			}
			continue
		}
		k := flatByLower[lower]
		if k == nil {
			probs.add(f.unknown(kn, written, key, flatCandidates(inSection)))
			continue
		}
		if inSection && k.topOnly {
			msg := "is chosen at the top level, not inside an algorithm section"
			if k.name == "algorithm" {
				msg += " (did you mean algoritm, the criterion?)"
			}
			probs.add(&Error{Where: f.at(kn), Key: written, Msg: msg})
			continue
		}
		if !f.firstTime(seen, k.name, written, kn, probs) {
			continue
		}
		f.value(k, kn, vn, written, dest, probs)
	}
}

// walkPath reads a path: mapping.
func (f *fileLayers) walkPath(m *yaml.Node, prefix string, dest map[string]fileValue, probs *problems) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := resolve(m.Content[i]), m.Content[i+1]
		key, ok := f.keyName(kn, prefix, probs)
		if !ok {
			continue
		}
		written := prefix + key
		k := pathByLower[strings.ToLower(key)]
		if k == nil {
			probs.add(f.unknown(kn, written, key, pathLeaves))
			continue
		}
		if !f.firstTime(seen, k.name, written, kn, probs) {
			continue
		}
		f.value(k, kn, vn, written, dest, probs)
	}
}

func (f *fileLayers) keyName(kn *yaml.Node, prefix string, probs *problems) (string, bool) {
	if kn == nil || kn.Kind != yaml.ScalarNode {
		probs.add(&Error{Where: f.at(kn), Key: strings.TrimSuffix(prefix, "."), Msg: "keys must be plain names"})
		return "", false
	}
	if kn.Value == "<<" {
		probs.add(&Error{Where: f.at(kn), Key: prefix + "<<", Msg: "YAML merge keys are not supported; write the keys out"})
		return "", false
	}
	return kn.Value, true
}

// firstTime reports a key given twice in one mapping. yaml.v3 only rejects
// duplicates when decoding into Go maps, and "P" next to "p", or criterion
// next to algoritm, are duplicates only to us.
func (f *fileLayers) firstTime(seen map[string]int, canon, written string, kn *yaml.Node, probs *problems) bool {
	if line, dup := seen[canon]; dup {
		probs.add(&Error{Where: f.at(kn), Key: written, Msg: fmt.Sprintf("is set twice in the same mapping (first at line %d)", line)})
		return false
	}
	seen[canon] = kn.Line
	return true
}

func (f *fileLayers) value(k *spec, kn, vn *yaml.Node, written string, dest map[string]fileValue, probs *problems) {
	v, p := parseNode(k, vn)
	if p != "" {
		probs.add(&Error{Where: f.at(kn), Key: written, Msg: p})
		return
	}
	if v == nil {
		return // null: not set here, so a lower layer's value stands
	}
	dest[k.name] = fileValue{val: v, line: kn.Line, written: written}
}

func (f *fileLayers) unknown(kn *yaml.Node, written, key string, candidates []string) *Error {
	e := &Error{Where: f.at(kn), Key: shorten(written), Msg: "unknown key"}
	if s := nearest(key, candidates); s != "" {
		e.Suggestion = s
		e.Msg += fmt.Sprintf(" (did you mean %s?)", s)
	} else {
		e.Msg += " (see Pruning.example.yaml for the keys gopruner reads)"
	}
	return e
}

// sectionName is the canonical algorithm for a section key, or "".
func sectionName(key string) string {
	for _, s := range sections {
		if strings.EqualFold(key, s) {
			return s
		}
	}
	return ""
}

var (
	flatByLower = map[string]*spec{}
	pathByLower = map[string]*spec{}
	pathLeaves  []string
	// flatNames are the candidates for a did-you-mean in a section; the top
	// level adds the section names and "path".
	flatNames []string
)

func init() {
	for _, k := range keys {
		if k.inPath() {
			pathByLower[strings.ToLower(k.leaf())] = k
			pathLeaves = append(pathLeaves, k.leaf())
			continue
		}
		flatByLower[strings.ToLower(k.name)] = k
		flatNames = append(flatNames, k.name)
		for _, a := range k.aliases {
			flatByLower[strings.ToLower(a)] = k
			flatNames = append(flatNames, a)
		}
	}
}

func flatCandidates(inSection bool) []string {
	c := append([]string{}, flatNames...)
	if !inSection {
		c = append(c, sections...)
	}
	c = append(c, "path")
	for _, l := range pathLeaves {
		c = append(c, "path."+l)
	}
	return c
}
