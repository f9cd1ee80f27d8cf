package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// fingerprintKeys are the settings a resumed run must share with the run
// that wrote the checkpoint: they decide which channels were removed so far
// and what the search is aiming at. Training hyper-parameters, devices and
// output paths may change between runs without invalidating the checkpoint.
var fingerprintKeys = []string{
	"algorithm", "P", "alf", "iskl", "criterion", "delta_crop", "select", "step",
	"short_term_steps", "seed", "input_shape", "path.model", "path.dataset",
	"delta_schedule", "delta_decay", "common_batches", "tie_break", "eval_samples", "bn_batches",
	"target", "latency_device", "latency_threads", "latency_batch",
}

// laterKeys are fingerprint keys added after checkpoints already existed.
// They are recorded only when they differ from their default, so a
// checkpoint written before them, whose run behaved as their defaults do,
// still resumes under the defaults.
var laterKeys = map[string]bool{"delta_schedule": true, "delta_decay": true, "common_batches": true, "tie_break": true,
	"eval_samples": true, "bn_batches": true, "target": true, "latency_device": true, "latency_threads": true,
	"latency_batch": true}

// Fingerprint maps the settings that matter for --resume to their canonical
// text. It marshals to JSON as a plain object, for storing with checkpoints.
type Fingerprint map[string]string

// Fingerprint returns the configuration's resume fingerprint.
func (c *Config) Fingerprint() Fingerprint {
	f := Fingerprint{}
	for _, name := range fingerprintKeys {
		k := byName[name]
		v := k.get(c)
		if laterKeys[name] && formatValue(v) == formatValue(k.def) {
			continue
		}
		if s, ok := v.(string); ok && strings.HasPrefix(name, "path.") && s != "" {
			v = filepath.Clean(s) // "./m.pt" and "m.pt" are the same model
		}
		f[name] = formatValue(v)
	}
	return f
}

// Diff lists the keys, in fingerprint order, whose values differ between f
// and other, including keys that only one of them has.
func (f Fingerprint) Diff(other Fingerprint) []string {
	var out []string
	for _, name := range fingerprintKeys {
		a, okA := f[name]
		b, okB := other[name]
		if a != b || okA != okB {
			out = append(out, name)
		}
	}
	return out
}

// CheckResume refuses to resume from a checkpoint written with settings that
// matter (see Fingerprint) different from c's. The error names the first
// differing key with both values, and counts the others.
func CheckResume(saved Fingerprint, c *Config) error {
	now := c.Fingerprint()
	diff := saved.Diff(now)
	if len(diff) == 0 {
		return nil
	}
	key := diff[0]
	was, ok := saved[key]
	switch {
	case !ok && laterKeys[key]:
		was = formatValue(byName[key].def)
	case !ok:
		was = "(not recorded)"
	}
	is, ok := now[key]
	if !ok && laterKeys[key] {
		is = formatValue(byName[key].def)
	}
	msg := fmt.Sprintf("differs from the checkpoint being resumed: checkpoint has %s, now %s (%s)",
		orNotSet(was), orNotSet(is), c.Origin(key))
	if len(diff) > 1 {
		msg += "; also differ: " + strings.Join(diff[1:], ", ")
	}
	msg += "; restore the setting or run without --resume"
	return &Error{Where: "--resume", Key: key, Msg: msg}
}

func orNotSet(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
