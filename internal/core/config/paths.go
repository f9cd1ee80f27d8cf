package config

import (
	"fmt"

	"github.com/gopruner/gopruner/internal/core/safepath"
)

// checkPaths applies the path policy (package safepath) to the keys that
// name places a run writes to: model_name is one path component, so that
// everything a run writes stays in exp_save/model_name/ and
// exp_save/model_name.txt. It checks the effective value, so a name derived
// from path.model ("..", say) is refused as well as one given explicitly.
func (c *Config) checkPaths() error {
	name := c.Path.ModelName
	if name == "" && c.origins["path.model_name"].Source == SourceDefault {
		return nil // no model yet: the command says what is missing
	}
	if err := safepath.Component(name); err != nil {
		o := c.origins["path.model_name"]
		what := clip(name)
		if o.Source == SourceDefault && o.Where != "" {
			what += " (" + o.Where + " " + clip(c.Path.Model) + "; give --model-name)"
		}
		return &Error{Where: o.errWhere(), Key: "path.model_name",
			Msg: fmt.Sprintf("%s %v; the run name is one directory name under exp_save", what, err)}
	}
	return nil
}
