package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// rawFlag keeps a flag's text and leaves parsing to Load, so a bad flag value
// is reported like a bad file or env value (an *Error naming the flag and
// the key, exit 2) rather than as pflag's generic "invalid argument".
type rawFlag struct {
	k    *spec
	vals []string
}

// String is the value as given, list occurrences joined by commas.
func (f *rawFlag) String() string {
	if f == nil || len(f.vals) == 0 {
		return ""
	}
	if f.k.kind.isList() {
		return strings.Join(f.vals, ",")
	}
	return f.vals[len(f.vals)-1]
}

// Set records one occurrence; list flags accumulate (--iskl a --iskl b), as
// pflag's slice flags do.
func (f *rawFlag) Set(s string) error {
	if f.k.kind.isList() {
		f.vals = append(f.vals, s)
	} else {
		f.vals = []string{s}
	}
	return nil
}

// Type names the value in help output.
func (f *rawFlag) Type() string { return f.k.kind.String() }

// RegisterFlags defines on fs the flag of every configuration key, or of the
// keys named (canonical YAML names such as "path.model", "P", "input_shape"),
// so that a subcommand can offer only the flags it uses. A flag name fs
// already has is skipped, which lets the CLI define some flags itself
// (pflag would panic on a redefinition). An unknown key name is an error.
func RegisterFlags(fs *pflag.FlagSet, only ...string) error {
	list := keys
	if len(only) > 0 {
		list = make([]*spec, 0, len(only))
		for _, name := range only {
			k := byName[name]
			if k == nil {
				return &Error{Key: name, Msg: "RegisterFlags: no such configuration key"}
			}
			list = append(list, k)
		}
	}
	for _, k := range list {
		if fs.Lookup(k.flag) != nil {
			continue
		}
		def := ""
		if k.def != nil {
			def = formatValue(k.def)
		}
		usage := k.help
		if def != "" {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		usage += fmt.Sprintf(" [%s, %s]", k.name, envName(k.name))
		// DefValue stays empty: pflag would print a second "(default ...)"
		// for a custom type, and the usage text already has it.
		f := fs.VarPF(&rawFlag{k: k}, k.flag, "", usage)
		if k.kind == kBool {
			f.NoOptDefVal = "true" // --resize-alf alone means true
		}
	}
	return nil
}
