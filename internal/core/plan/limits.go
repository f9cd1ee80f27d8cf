package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/gopruner/gopruner/internal/core/fail"
)

// Limits on a plan.json, which `gopruner apply` reads and a worker may one
// day receive from a broker: far above any real model (a ResNet-152 plan
// changes about 1,000 tensors), low enough that a hostile file fails fast
// instead of exhausting memory. README "Security" lists them.
const (
	MaxPlanBytes   = 64 << 20
	MaxPlanTensors = 100_000
	MaxPlanGroups  = 100_000
)

// readLimited reads path, refusing more than MaxPlanBytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fail.Usage(fmt.Errorf("plan: %w", err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxPlanBytes {
		return nil, fail.Usagef("plan %s: larger than %d bytes; not a plan (README: Security)", path, MaxPlanBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxPlanBytes+1))
	if err != nil {
		return nil, fail.Usage(fmt.Errorf("plan %s: %w", path, err))
	}
	return data, nil
}

// checkLimits counts the plan's tensors and groups with a streaming scan,
// before anything is decoded into maps and slices, and stops at the first
// count over its limit. A document that is not valid JSON passes: the
// decoder then reports where it breaks.
func checkLimits(data []byte, name string) error {
	if len(data) > MaxPlanBytes {
		return fail.Usagef("plan %s: larger than %d bytes; not a plan (README: Security)", name, MaxPlanBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := kt.(string)
		var limit int
		switch key {
		case "tensors":
			limit = MaxPlanTensors
		case "groups":
			limit = MaxPlanGroups
		default:
			if skipValue(dec) != nil {
				return nil
			}
			continue
		}
		n, err := countEntries(dec, limit)
		if err != nil {
			return nil
		}
		if n > limit {
			return fail.Usagef("plan %s: %s: more than %d entries; not a plan of a real model (README: Security)", name, key, limit)
		}
	}
	return nil
}

// countEntries counts the members of the object or array that comes next,
// stopping once the count passes limit.
func countEntries(dec *json.Decoder, limit int) (int, error) {
	t, err := dec.Token()
	if err != nil {
		return 0, err
	}
	d, ok := t.(json.Delim)
	if !ok {
		return 0, nil // a scalar: the decoder will say it is the wrong type
	}
	n := 0
	for dec.More() {
		if d == '{' {
			if _, err := dec.Token(); err != nil { // the member's name
				return n, err
			}
		}
		if err := skipValue(dec); err != nil {
			return n, err
		}
		if n++; n > limit {
			return n, nil
		}
	}
	_, err = dec.Token()
	return n, err
}

// skipValue consumes one JSON value of any depth.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}
