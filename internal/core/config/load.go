package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Sources are the inputs of one Load. Everything is injected, so tests and
// the CLI decide what the process environment and working directory mean.
type Sources struct {
	// File is the configuration file (--config). When empty, Load uses the
	// flag "config" of Flags if it was set (set to "" it means no file at
	// all), then GOPRUNER_CONFIG from Env, then Dir/Pruning.yaml if that
	// exists, else no file.
	File string
	// Content, when non-nil, is the file's text and File (or "Pruning.yaml")
	// only names it in messages; the demo passes its embedded configuration
	// this way.
	Content []byte
	// Dir is where Pruning.yaml is looked for; "" means the working directory.
	Dir string
	// Flags are the parsed command-line flags; nil means none. Only flags
	// that were set on the command line (Changed) count, whatever their
	// type, so the CLI may define them with RegisterFlags or itself.
	Flags *pflag.FlagSet
	// Env is the environment as KEY=VALUE (os.Environ()); nil means none.
	// Empty values count as unset.
	Env []string
}

// Source is the kind of place a value came from.
type Source int

// Sources of a value, from the weakest to the strongest.
const (
	SourceDefault Source = iota
	SourceFile
	SourceEnv
	SourceFlag
)

// String is "default", "file", "env" or "flag".
func (s Source) String() string {
	switch s {
	case SourceFile:
		return "file"
	case SourceEnv:
		return "env"
	case SourceFlag:
		return "flag"
	}
	return "default"
}

// Origin is where one effective value came from.
type Origin struct {
	Source Source
	// Where details it: "Pruning.yaml:9 L2Norm.P", "GOPRUNER_P", "--P", or a
	// note on a derived default; "" for a plain default.
	Where string
}

// String is the source followed by its detail: "file Pruning.yaml:9 L2Norm.P".
func (o Origin) String() string {
	if o.Where == "" {
		return o.Source.String()
	}
	return o.Source.String() + " " + o.Where
}

// errWhere is the origin as an Error's Where: the file line without the key
// (Error adds it), "env NAME" or "flag --name".
func (o Origin) errWhere() string {
	switch o.Source {
	case SourceFile:
		loc, _, _ := strings.Cut(o.Where, " ")
		return loc
	case SourceEnv, SourceFlag:
		return o.String()
	}
	return ""
}

// layerValue is one validated value of the env or flag layer, in its key's
// canonical type.
type layerValue struct {
	val    any
	origin Origin
}

// Load builds the effective configuration from defaults, the file, the
// environment and the flags, in rising precedence. Every error it returns is
// an *Error (errors.Is(err, ErrUsage)) naming the file line, variable or flag
// and the key at fault.
func Load(src Sources) (*Config, error) {
	env := environ(src.Env)
	var probs problems

	name, data, err := readConfigFile(src, env)
	if err != nil {
		return nil, err
	}
	file := newFileLayers(name)
	if data != nil {
		file = parseFile(name, data, &probs)
	}
	envL, warnings := envLayer(env, &probs)
	flagL := flagLayer(src.Flags, &probs)
	if err := probs.err(); err != nil {
		return nil, err
	}

	// The algorithm picks the file section that overrides the top level, so
	// it is settled first, by the same precedence as every other key.
	alg := string(kinds.AlgorithmMyPruning)
	if v, ok := file.top["algorithm"]; ok {
		alg = v.val.(string)
	}
	if v, ok := envL["algorithm"]; ok {
		alg = v.val.(string)
	}
	if v, ok := flagL["algorithm"]; ok {
		alg = v.val.(string)
	}
	fileL := file.effective(alg)

	v, err := merge(fileL, envL, flagL)
	if err != nil {
		return nil, err
	}

	c := &Config{File: name, Warnings: warnings, origins: map[string]Origin{}}
	given := map[string]bool{}
	for _, k := range keys {
		o := Origin{Source: SourceDefault}
		if fv, ok := fileL[k.name]; ok {
			o = Origin{Source: SourceFile, Where: fmt.Sprintf("%s:%d %s", name, fv.line, fv.written)}
		}
		if lv, ok := envL[k.name]; ok {
			o = lv.origin
		}
		if lv, ok := flagL[k.name]; ok {
			o = lv.origin
		}
		given[k.name] = o.Source != SourceDefault
		c.origins[k.name] = o

		val := v.Get(strings.ToLower(k.name))
		if val == nil {
			continue // unset, or a default derived below
		}
		k.set(c, cloneValue(val))
	}
	c.deriveDefaults(given)
	if err := c.crossCheck(); err != nil {
		return nil, err
	}
	return c, nil
}

// merge is viper's one job: it stacks the layers, every value already
// validated and in its key's canonical type, and answers each key from the
// strongest layer that has it (flags > environment > file > defaults).
// Viper reads the environment only from the process, while Sources.Env is
// injected, so the env layer is merged into viper's config layer after the
// file (a later merge wins); the changed flags are viper's overrides.
func merge(fileL map[string]fileValue, envL, flagL map[string]layerValue) (*viper.Viper, error) {
	v := viper.New()
	for _, k := range keys {
		if k.def != nil {
			v.SetDefault(strings.ToLower(k.name), cloneValue(k.def))
		}
	}
	fm := map[string]any{}
	for name, fv := range fileL {
		fm[name] = fv.val
	}
	em := map[string]any{}
	for name, lv := range envL {
		em[name] = lv.val
	}
	for _, m := range []map[string]any{fm, em} {
		if err := v.MergeConfigMap(nest(m)); err != nil {
			return nil, &Error{Msg: "merging configuration layers", Err: err}
		}
	}
	for name, lv := range flagL {
		v.Set(strings.ToLower(name), cloneValue(lv.val))
	}
	return v, nil
}

// nest turns canonical keys into viper's nested, lower-case layout
// ("path.model" → {"path": {"model": ...}}).
func nest(flat map[string]any) map[string]any {
	out := map[string]any{}
	for name, val := range flat {
		lk := strings.ToLower(name)
		if parent, leaf, ok := strings.Cut(lk, "."); ok {
			sub, _ := out[parent].(map[string]any)
			if sub == nil {
				sub = map[string]any{}
				out[parent] = sub
			}
			sub[leaf] = cloneValue(val)
			continue
		}
		out[lk] = cloneValue(val)
	}
	return out
}

// environ indexes KEY=VALUE pairs; a later duplicate wins, as in execve.
func environ(list []string) map[string]string {
	m := map[string]string{}
	for _, kv := range list {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			m[k] = v
		}
	}
	return m
}

// readConfigFile picks and reads the configuration file; nil data means none.
func readConfigFile(src Sources, env map[string]string) (string, []byte, error) {
	name, explicit := src.File, src.File != ""
	if !explicit && src.Flags != nil {
		if f := src.Flags.Lookup("config"); f != nil && f.Changed {
			name, explicit = f.Value.String(), true
		}
	}
	if !explicit && env[EnvConfigFile] != "" {
		name, explicit = env[EnvConfigFile], true
	}
	if src.Content != nil {
		if name == "" {
			name = DefaultFileName
		}
		if len(src.Content) > maxFileSize {
			return "", nil, &Error{Where: name, Msg: fmt.Sprintf("is larger than %d bytes; not a configuration file", maxFileSize)}
		}
		return name, src.Content, nil
	}
	if !explicit {
		dir := src.Dir
		if dir == "" {
			dir = "."
		}
		cand := filepath.Join(dir, DefaultFileName)
		st, err := os.Stat(cand)
		switch {
		case err == nil && st.Mode().IsRegular():
			name = cand
		case err == nil || errors.Is(err, fs.ErrNotExist):
			return "", nil, nil // no ./Pruning.yaml: defaults, env and flags only
		default:
			return "", nil, &Error{Where: cand, Msg: "cannot read config file", Err: err}
		}
	}
	if name == "" {
		return "", nil, nil // --config "" asks for no file, not even ./Pruning.yaml
	}
	fh, err := os.Open(name)
	if err != nil {
		return "", nil, &Error{Where: name, Msg: "cannot read config file: " + pathErrText(err), Err: err}
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return "", nil, &Error{Where: name, Msg: "cannot read config file: " + pathErrText(err), Err: err}
	}
	if len(data) > maxFileSize {
		return "", nil, &Error{Where: name, Msg: fmt.Sprintf("is larger than %d bytes; not a configuration file", maxFileSize)}
	}
	return name, data, nil
}

// pathErrText drops the path that *fs.PathError repeats, since Where names it.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// envLayer reads the GOPRUNER_* variables that name keys. A variable that
// names no key is only a warning (other parts of gopruner and its scripts
// may use the prefix), and only when it looks like a misspelt key.
func envLayer(env map[string]string, probs *problems) (map[string]layerValue, []string) {
	out := map[string]layerValue{}
	for _, k := range keys {
		var first string
		for _, name := range k.envNames() {
			text, ok := env[name]
			if !ok || text == "" {
				continue
			}
			if first != "" {
				if text != env[first] {
					probs.add(&Error{Where: "env " + name, Key: k.name, Msg: fmt.Sprintf("conflicts with %s=%s; set one of them", first, env[first])})
				}
				continue
			}
			first = name
			v, p := parseString(k, text)
			if p != "" {
				probs.add(&Error{Where: "env " + name, Key: k.name, Msg: p})
				continue
			}
			out[k.name] = layerValue{val: v, origin: Origin{Source: SourceEnv, Where: name}}
		}
	}
	var warnings []string
	known := make([]string, 0, len(byEnv))
	for n := range byEnv {
		known = append(known, strings.TrimPrefix(n, EnvPrefix))
	}
	sort.Strings(known) // ties in nearest go to the first: keep it stable
	names := make([]string, 0, len(env))
	for n := range env {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if byEnv[n] != nil || n == EnvConfigFile {
			continue
		}
		if s := nearest(strings.TrimPrefix(n, EnvPrefix), known); s != "" {
			warnings = append(warnings, fmt.Sprintf("environment variable %s is not a gopruner setting (did you mean %s%s?)", n, EnvPrefix, s))
		}
	}
	return out, warnings
}

// flagLayer reads the flags that were set on the command line.
func flagLayer(fset *pflag.FlagSet, probs *problems) map[string]layerValue {
	out := map[string]layerValue{}
	if fset == nil {
		return out
	}
	for _, k := range keys {
		f := fset.Lookup(k.flag)
		if f == nil || !f.Changed {
			continue
		}
		text := flagText(f)
		v, p := parseString(k, text)
		if p != "" {
			probs.add(&Error{Where: "flag --" + k.flag, Key: k.name, Msg: p})
			continue
		}
		out[k.name] = layerValue{val: v, origin: Origin{Source: SourceFlag, Where: "--" + k.flag}}
	}
	return out
}

// flagText is a flag's value as text for the key's parser, whatever type the
// CLI gave the flag.
func flagText(f *pflag.Flag) string {
	if rf, ok := f.Value.(*rawFlag); ok {
		return rf.String()
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return strings.Join(sv.GetSlice(), ",")
	}
	return f.Value.String()
}

// crossCheck validates what no single key can: per-channel normalisation
// must match the input's channel count.
func (c *Config) crossCheck() error {
	if err := c.checkPaths(); err != nil {
		return err
	}
	for _, pair := range []struct {
		key string
		v   []float64
	}{{"mean", c.Mean}, {"std", c.Std}} {
		if pair.v == nil || c.InputShape == nil {
			continue
		}
		if ch := c.InputShape[1]; len(pair.v) != ch && len(pair.v) != 1 {
			return &Error{Where: c.origins[pair.key].errWhere(), Key: pair.key,
				Msg: fmt.Sprintf("has %d values but input_shape %s (%s) has %d channels", len(pair.v), formatValue(c.InputShape), c.origins["input_shape"], ch)}
		}
	}
	return nil
}
