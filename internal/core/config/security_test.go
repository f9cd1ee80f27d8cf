package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The path policy and the YAML limits of issue 17, on the configuration.

func TestModelNameIsOneComponent(t *testing.T) {
	bad := []struct {
		name, value string
	}{
		{"parent", "../x"},
		{"escape twice", "../../escaped"},
		{"subdirectory", "a/b"},
		{"absolute", "/abs"},
		{"dot-dot", ".."},
		{"dot", "."},
		{"newline", "run\nname"},
		{"backslash", `a\b`},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			for _, src := range []struct {
				how   string
				yaml  string
				env   []string
				args  []string
				where string
			}{
				{how: "flag", args: []string{"--model-name", c.value}, where: "flag --model-name"},
				{how: "env", env: []string{"GOPRUNER_PATH_MODEL_NAME=" + c.value}, where: "env GOPRUNER_PATH_MODEL_NAME"},
				{how: "file", yaml: "path:\n  model_name: " + quoteYAML(c.value) + "\n", where: "Pruning.yaml:2"},
			} {
				_, err := load(t, src.yaml, src.env, src.args...)
				if err == nil {
					t.Errorf("%s: model_name %q accepted", src.how, c.value)
					continue
				}
				msg := err.Error()
				if !errors.Is(err, ErrUsage) || !strings.Contains(msg, src.where) || !strings.Contains(msg, "path.model_name") {
					t.Errorf("%s: %q does not name %s and path.model_name", src.how, msg, src.where)
				}
				if strings.ContainsAny(msg, "\n\r") {
					t.Errorf("%s: message is not one line: %q", src.how, msg)
				}
			}
		})
	}
	for _, good := range []string{"resnet18", "xray_pruned", "v1.2-final", "..hidden"} {
		if c, err := load(t, "", nil, "--model-name", good); err != nil || c.Path.ModelName != good {
			t.Errorf("model_name %q: %v", good, err)
		}
	}
}

// A run name derived from the model file is checked too.
func TestDerivedModelName(t *testing.T) {
	c := mustLoad(t, "", nil, "--model", "models/resnet.pt")
	if c.Path.ModelName != "resnet" {
		t.Errorf("derived %q", c.Path.ModelName)
	}
	_, err := load(t, "", nil, "--model", "..")
	if err == nil || !strings.Contains(err.Error(), "path.model_name") || !strings.Contains(err.Error(), "--model-name") {
		t.Errorf("--model ..: %v", err)
	}
	// An explicit name wins over a bad derived one.
	if _, err := load(t, "", nil, "--model", "..", "--model-name", "ok"); err != nil {
		t.Errorf("--model .. --model-name ok: %v", err)
	}
}

func quoteYAML(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s) + `"`
}

func TestAllowExternalPathsKey(t *testing.T) {
	if Default().AllowExternalPaths {
		t.Error("allow_external_paths defaults to true")
	}
	for _, c := range []struct {
		how  string
		yaml string
		env  []string
		args []string
	}{
		{how: "flag", args: []string{"--allow-external-paths"}},
		{how: "env", env: []string{"GOPRUNER_ALLOW_EXTERNAL_PATHS=true"}},
		{how: "file", yaml: "allow_external_paths: true\n"},
	} {
		if c2 := mustLoad(t, c.yaml, c.env, c.args...); !c2.AllowExternalPaths {
			t.Errorf("%s did not set allow_external_paths", c.how)
		}
	}
}

// billionLaughs is the YAML "billion laughs": 9 anchors, each a list of nine
// aliases of the one before, 10⁹ strings once expanded, 700 bytes as text.
// The budget trips at e (66,430 values with the lists themselves).
func billionLaughs(key string) string {
	var b strings.Builder
	b.WriteString(`a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]` + "\n")
	for c := 'b'; c <= 'i'; c++ {
		prev := string(c - 1)
		b.WriteString(string(c) + ": &" + string(c) + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]\n")
	}
	b.WriteString(key + ": *i\n")
	return b.String()
}

func TestYAMLAliasBomb(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		wants     []string
	}{
		{"billion laughs", billionLaughs("iskl"), []string{"Pruning.yaml:5", "e:", "alias bomb"}},
		// Under a known key, so that only the budget can stop it.
		{"in iskl", "iskl: &a [x, x, x, x, x, x, x, x, x, x]\n" +
			"my_pruning: {iskl: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}\n" +
			"L2Norm: {iskl: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}\n" +
			"mean: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
			"std: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
			[]string{"Pruning.yaml:4", "mean:", "beyond 10000 values"}},
		{"self reference", "iskl: &a [x, *a]\n", []string{"Pruning.yaml:1", "contains it"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := load(t, c.doc, nil)
			d := time.Since(start)
			t.Logf("refused in %v: %v", d, err)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
			if d > time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	// Aliases within the budget still work.
	c := mustLoad(t, "iskl: &x [a.b, c.d]\nmy_pruning:\n  iskl: *x\n", nil)
	if len(c.Iskl) != 2 {
		t.Errorf("iskl %v", c.Iskl)
	}
}

func TestConfigFileSizeLimit(t *testing.T) {
	_, err := load(t, "# "+strings.Repeat("x", maxFileSize)+"\n", nil)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a config over %d bytes: %v", maxFileSize, err)
	}
}
