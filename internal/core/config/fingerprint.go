package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

// fingerprintKeys are the settings a resumed run must share with the run
// that wrote the checkpoint: they decide which channels were removed so far
// and what the search is aiming at. Training hyper-parameters, devices and
// output paths may change between runs without invalidating the checkpoint.
var fingerprintKeys = []string{
	"algorithm", "P", "alf", "iskl", "criterion", "delta_crop", "select", "step",
	"short_term_steps", "seed", "input_shape", "path.model", "path.dataset",
	"delta_schedule", "delta_decay", "common_batches", "tie_break", "eval_samples", "bn_batches",
	"distill", "distill_temperature", "distill_weight",
	"target", "latency_device", "latency_threads", "latency_batch", "max_group_cut",
	"shortlist", "commit_top",
}

// laterKeys are fingerprint keys added after checkpoints already existed,
// each with the value every run before it behaved as (its default when it
// was added). They are recorded only when they differ from that value, so a
// checkpoint written before them still resumes with them at that value, and
// one whose default changed later (common_batches, bn_batches, max_group_cut,
// shortlist, commit_top)
// is refused rather than resumed with another setting.
var laterKeys = map[string]string{"delta_schedule": "constant", "delta_decay": "0.96", "common_batches": "false",
	"tie_break": "none", "eval_samples": "0", "bn_batches": "0", "distill": "false", "distill_temperature": "4",
	"distill_weight": "0.5", "target": "macs", "latency_device": "cpu", "latency_threads": "1", "latency_batch": "1",
	"max_group_cut": "1", "shortlist": "0", "commit_top": "1"}

func isLater(key string) bool {
	_, ok := laterKeys[key]
	return ok
}

// onlyWith are fingerprint keys that change the run only under another
// setting: the temperature of a run without distillation is never used, nor
// max_group_cut by a search that steps by channels, so changing them must not
// stop a resume.
var onlyWith = map[string]func(c *Config) bool{
	"distill_temperature": func(c *Config) bool { return c.Distill },
	"distill_weight":      func(c *Config) bool { return c.Distill },
	"max_group_cut":       func(c *Config) bool { return c.Step == kinds.StepMACs },
}

// Fingerprint maps the settings that matter for --resume to their canonical
// text. It marshals to JSON as a plain object, for storing with checkpoints.
type Fingerprint map[string]string

// Fingerprint returns the configuration's resume fingerprint.
func (c *Config) Fingerprint() Fingerprint {
	f := Fingerprint{}
	for _, name := range fingerprintKeys {
		k := byName[name]
		v := k.get(c)
		if legacy, later := laterKeys[name]; later && formatValue(v) == legacy {
			continue
		}
		if used, ok := onlyWith[name]; ok && !used(c) {
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
	case !ok && isLater(key):
		was = laterKeys[key]
	case !ok:
		was = "(not recorded)"
	}
	is, ok := now[key]
	if !ok && isLater(key) {
		is = laterKeys[key]
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
