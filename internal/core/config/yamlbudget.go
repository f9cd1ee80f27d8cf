package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// maxYAMLValues bounds the size of the configuration once YAML aliases are
// expanded. A real Pruning.yaml has a few hundred values; a "billion laughs"
// document (nine anchors, each a list of nine aliases of the previous one)
// parses into a few dozen nodes but expands to 10⁹. yaml.v3 keeps aliases
// as pointers in a yaml.Node tree, so nothing expands while parsing; the
// budget is checked before any code walks the tree, so that no later
// consumer (viper, a decoder, a future key) ever expands one either.
const maxYAMLValues = 10_000

// aliasBudget counts the values of doc with every alias expanded, each
// distinct node once (memoised), and reports the first top-level key whose
// expansion takes the total over maxYAMLValues, or an alias that contains
// itself. It runs in time linear in the number of parsed nodes.
func (f *fileLayers) aliasBudget(doc *yaml.Node) *Error {
	b := &budget{memo: map[*yaml.Node]int64{}}
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		if b.size(root) > maxYAMLValues || b.cycle != nil {
			return f.budgetErr(b, root, "")
		}
		return nil
	}
	total := int64(1)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		total += b.size(k) + b.size(v)
		if total > maxYAMLValues || b.cycle != nil {
			return f.budgetErr(b, k, k.Value)
		}
	}
	return nil
}

func (f *fileLayers) budgetErr(b *budget, at *yaml.Node, key string) *Error {
	if b.cycle != nil {
		return &Error{Where: f.at(b.cycle), Key: shorten(key), Msg: "a YAML alias refers to a value that contains it"}
	}
	return &Error{Where: f.at(at), Key: shorten(key),
		Msg: fmt.Sprintf("YAML aliases expand the configuration beyond %d values; a Pruning.yaml has a few hundred (is it an alias bomb?)", maxYAMLValues)}
}

type budget struct {
	memo  map[*yaml.Node]int64 // expanded size; -1 while being counted
	cycle *yaml.Node
}

// size is the number of values under n with aliases expanded, saturated
// just above the budget so that it never overflows.
func (b *budget) size(n *yaml.Node) int64 {
	if n == nil || b.cycle != nil {
		return 0
	}
	if s, ok := b.memo[n]; ok {
		if s < 0 {
			b.cycle = n
			return 0
		}
		return s
	}
	b.memo[n] = -1
	s := int64(1)
	if n.Kind == yaml.AliasNode {
		s = b.size(n.Alias)
	}
	for _, c := range n.Content {
		s += b.size(c)
		if s > maxYAMLValues {
			s = maxYAMLValues + 1
			break
		}
	}
	b.memo[n] = s
	return s
}
