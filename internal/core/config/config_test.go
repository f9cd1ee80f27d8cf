package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gopruner/gopruner/internal/core/device"
	"github.com/gopruner/gopruner/internal/core/kinds"
	"github.com/spf13/pflag"
)

// oldStyle is the acceptance file: the original tool's layout with both
// algorithm sections, L2Norm selected.
const oldStyle = `algorithm: L2Norm
path:
  model: shared/results/interface.pt
  exp_save: exp_save
  model_name: xray_pruned
input_shape: [1, 3, 480, 640]
L2Norm:
  P: 0.3
  training: false
my_pruning:
  algoritm: TaylorFOWeight
  P: 0.5
  alf: 8
  cart: [0, 0, 1, 1, 1, 2]
  delta_crop: 0.1
  resize_alf: true
  iskl: [layer1.0.conv1]
alf: 8
iskl: [layer1.0.conv1]
`

// load runs Load on YAML text with optional env and command-line args; the
// flags are those RegisterFlags defines.
func load(t *testing.T, yaml string, env []string, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	if err := RegisterFlags(fs); err != nil {
		t.Fatalf("RegisterFlags: %v", err)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing flags %v: %v", args, err)
	}
	src := Sources{File: "Pruning.yaml", Flags: fs, Env: env, Dir: t.TempDir()}
	if yaml != "" {
		src.Content = []byte(yaml)
	} else {
		src.File = ""
	}
	return Load(src)
}

func mustLoad(t *testing.T, yaml string, env []string, args ...string) *Config {
	t.Helper()
	c, err := load(t, yaml, env, args...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestOldStyleFile(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c *Config)
	}{
		{"L2Norm selected in the file", nil, func(t *testing.T, c *Config) {
			want := Default()
			want.Algorithm = kinds.AlgorithmL2Norm
			want.Path = Paths{Model: "shared/results/interface.pt", ExpSave: "exp_save", ModelName: "xray_pruned"}
			want.InputShape = []int{1, 3, 480, 640}
			want.P = 0.3
			want.Finetune = false
			want.Alf = 8
			want.Iskl = []string{"layer1.0.conv1"}
			assertSameSettings(t, c, want)
			if got := c.Origin("P"); got.Source != SourceFile || got.Where != "Pruning.yaml:8 L2Norm.P" {
				t.Errorf("origin of P = %q, want file Pruning.yaml:8 L2Norm.P", got)
			}
			if got := c.Origin("alf").Where; got != "Pruning.yaml:18 alf" {
				t.Errorf("origin of alf = %q", got)
			}
			if got := c.Origin("criterion").Source; got != SourceDefault {
				t.Errorf("criterion from the unused my_pruning section leaked: origin %v", got)
			}
		}},
		{"my_pruning selected by flag", []string{"--algorithm", "my_pruning"}, func(t *testing.T, c *Config) {
			if c.Algorithm != kinds.AlgorithmMyPruning || c.P != 0.5 || !c.ResizeAlf || !c.Finetune || c.Alf != 8 {
				t.Errorf("got algorithm %s P %v resize_alf %v training %v alf %d", c.Algorithm, c.P, c.ResizeAlf, c.Finetune, c.Alf)
			}
			want := []Slot{"cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:1", "cuda:2"}
			if !reflect.DeepEqual(c.Cart, want) {
				t.Errorf("cart = %v, want %v", c.Cart, want)
			}
			if c.Criterion != kinds.TaylorFOWeight || c.Origin("criterion").Where != "Pruning.yaml:11 my_pruning.algoritm" {
				t.Errorf("criterion = %s from %s", c.Criterion, c.Origin("criterion"))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustLoad(t, oldStyle, nil, tt.args...))
		})
	}
}

// assertSameSettings compares every setting, not the provenance.
func assertSameSettings(t *testing.T, got, want *Config) {
	t.Helper()
	ge, we := got.Entries(), want.Entries()
	for i := range ge {
		if !reflect.DeepEqual(exportValue(ge[i].Value), exportValue(we[i].Value)) {
			t.Errorf("%s = %s, want %s", ge[i].Key, formatValue(ge[i].Value), formatValue(we[i].Value))
		}
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, yaml, key, suggest, where string
	}{
		{"top level typo", "alf: 8\nalff: 8\n", "alff", "alf", "Pruning.yaml:2"},
		{"typo in a section", "my_pruning:\n  P: 0.5\n  alff: 8\n", "my_pruning.alff", "alf", "Pruning.yaml:3"},
		{"typo in path", "path:\n  modle: m.pt\n", "path.modle", "model", "Pruning.yaml:2"},
		{"path key at top level", "model: m.pt\n", "model", "path.model", "Pruning.yaml:1"},
		{"kebab case", "delta-crop: 0.1\n", "delta-crop", "delta_crop", "Pruning.yaml:1"},
		{"upper case P doubled", "PP: 0.3\n", "PP", "P", "Pruning.yaml:1"},
		{"section typo", "my_prunning:\n  P: 0.3\n", "my_prunning", "my_pruning", "Pruning.yaml:1"},
		{"path inside section", "L2Norm:\n  path:\n    exp_sav: x\n", "L2Norm.path.exp_sav", "exp_save", "Pruning.yaml:3"},
		{"nothing close", "xyzzy: 1\n", "xyzzy", "", "Pruning.yaml:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml, nil)
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage *Error", err)
			}
			if e.Key != tt.key || e.Suggestion != tt.suggest || e.Where != tt.where {
				t.Errorf("got key %q suggestion %q where %q, want %q %q %q", e.Key, e.Suggestion, e.Where, tt.key, tt.suggest, tt.where)
			}
			if !strings.Contains(err.Error(), tt.key) || (tt.suggest != "" && !strings.Contains(err.Error(), "did you mean "+tt.suggest+"?")) {
				t.Errorf("message %q does not name %q and suggest %q", err, tt.key, tt.suggest)
			}
		})
	}
}

func TestKeyErrorMessages(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		args []string
		want string // exact error text
	}{
		{"P out of range", "P: 1.5\n", nil, nil, "Pruning.yaml:1: P: 1.5 is outside (0,1)"},
		{"P zero", "L2Norm:\n  P: 0\n", nil, nil, "Pruning.yaml:2: L2Norm.P: 0 is outside (0,1)"},
		{"alf not an integer", "alf: eight\n", nil, nil, `Pruning.yaml:1: alf: "eight" is not an integer`},
		{"alf fraction", "alf: 8.5\n", nil, nil, `Pruning.yaml:1: alf: "8.5" is not an integer`},
		{"alf below 1", "alf: 0\n", nil, nil, "Pruning.yaml:1: alf: 0 must be an integer >= 1"},
		{"P boolean", "P: true\n", nil, nil, "Pruning.yaml:1: P: true is not a number"},
		{"P list", "P: [0.3]\n", nil, nil, "Pruning.yaml:1: P: is a list, want a number"},
		{"path scalar", "path: m.pt\n", nil, nil, "Pruning.yaml:1: path: must be a mapping (model: ..., exp_save: ..., model_name: ...)"},
		{"training", "training: maybe\n", nil, nil, `Pruning.yaml:1: training: "maybe" is not true or false`},
		{"algorithm", "algorithm: NetAdapt\n", nil, nil, `Pruning.yaml:1: algorithm: "NetAdapt" is not one of my_pruning, L2Norm`},
		{"criterion via algoritm", "my_pruning:\n  algoritm: FPGM\n", nil, nil, `Pruning.yaml:2: my_pruning.algoritm: "FPGM" is not one of TaylorFOWeight, L2Norm`},
		{"algorithm in a section", "my_pruning:\n  algorithm: L2Norm\n", nil, nil, "Pruning.yaml:2: my_pruning.algorithm: is chosen at the top level, not inside an algorithm section (did you mean algoritm, the criterion?)"},
		{"input shape rank 6", "input_shape: [1, 3, 4, 4, 8, 8]\n", nil, nil, "Pruning.yaml:1: input_shape: [1, 3, 4, 4, 8, 8] has 6 dimensions, want 2 to 5: N,F or N,C,L or N,C,H,W or N,C,D,H,W"},
		{"input shape rank 1", "input_shape: [16]\n", nil, nil, "Pruning.yaml:1: input_shape: [16] has 1 dimension, want 2 to 5: N,F or N,C,L or N,C,H,W or N,C,D,H,W"},
		{"device", "device: tpu\n", nil, nil, `Pruning.yaml:1: device: "tpu" is not a device (want cpu, cuda or cuda:N)`},
		{"iskl blank", "iskl: [a, '']\n", nil, nil, `Pruning.yaml:1: iskl: [a, ] has "", which is not a module path like layer1.0.conv1`},
		{"duplicate", "P: 0.3\np: 0.4\n", nil, nil, "Pruning.yaml:2: p: is set twice in the same mapping (first at line 1)"},
		{"criterion twice", "my_pruning:\n  criterion: L2Norm\n  algoritm: L2Norm\n", nil, nil, "Pruning.yaml:3: my_pruning.algoritm: is set twice in the same mapping (first at line 2)"},
		{"several problems", "P: 2\nalf: x\nfoo: 1\n", nil, nil, "Pruning.yaml:1: P: 2 is outside (0,1) (and 2 more problems)"},
		{"yaml syntax", "P: [0.3\n", nil, nil, "Pruning.yaml:1: invalid YAML: did not find expected ',' or ']'"},
		{"not a mapping", "- P\n", nil, nil, "Pruning.yaml:1: the top level must be a mapping of keys (algorithm: ..., path: ..., P: ...)"},
		{"env range", "", []string{"GOPRUNER_P=1.5"}, nil, "env GOPRUNER_P: P: 1.5 is outside (0,1)"},
		{"env type", "", []string{"GOPRUNER_ALF=eight"}, nil, `env GOPRUNER_ALF: alf: "eight" is not an integer`},
		{"env alias conflict", "", []string{"GOPRUNER_CRITERION=L2Norm", "GOPRUNER_ALGORITM=TaylorFOWeight"}, nil, "env GOPRUNER_ALGORITM: criterion: conflicts with GOPRUNER_CRITERION=L2Norm; set one of them"},
		{"flag range", "", nil, []string{"--delta-crop", "1"}, "flag --delta-crop: delta_crop: 1 is outside (0,1)"},
		{"flag type", "", nil, []string{"--alf=eight"}, `flag --alf: alf: "eight" is not an integer`},
		{"flag bool", "", nil, []string{"--finetune=perhaps"}, `flag --finetune: training: "perhaps" is not true or false`},
		{"flag cart", "", nil, []string{"--cart", "0,gpu"}, `flag --cart: cart: "gpu" is not a device slot (want a GPU number N, "cuda:N" or "cpu") (item 2)`},
		{"mean vs channels", "input_shape: [1, 3, 8, 8]\nmean: [0.5, 0.5]\n", nil, nil, "Pruning.yaml:2: mean: has 2 values but input_shape [1, 3, 8, 8] (file Pruning.yaml:1 input_shape) has 3 channels"},
		{"output empty part", "output: aux..0\n", nil, nil, `Pruning.yaml:1: output: aux..0 has an empty part; write a dict key, NamedTuple field or index, dotted for nested outputs (out, aux.0)`},
		{"output trailing dot", "", []string{"GOPRUNER_OUTPUT=out."}, nil, `env GOPRUNER_OUTPUT: output: out. has an empty part; write a dict key, NamedTuple field or index, dotted for nested outputs (out, aux.0)`},
		{"output spaces", "", nil, []string{"--output", "aux. 0"}, `flag --output: output: aux. 0 has a part with surrounding spaces (" 0")`},
		{"std positive", "", []string{"GOPRUNER_STD=0.2,0"}, nil, "env GOPRUNER_STD: std: [0.2, 0] must be > 0 for every channel"},
		{"distill weight above 1", "distill_weight: 1.5\n", nil, nil, "Pruning.yaml:1: distill_weight: 1.5 is outside [0,1]"},
		{"distill weight negative", "", []string{"GOPRUNER_DISTILL_WEIGHT=-0.1"}, nil, "env GOPRUNER_DISTILL_WEIGHT: distill_weight: -0.1 is outside [0,1]"},
		{"distill weight NaN", "", nil, []string{"--distill-weight", "NaN"}, `flag --distill-weight: distill_weight: "NaN" is not a number`},
		{"distill temperature zero", "my_pruning:\n  distill_temperature: 0\n", nil, nil, "Pruning.yaml:2: my_pruning.distill_temperature: 0 must be > 0"},
		{"distill temperature negative", "", nil, []string{"--distill-temperature", "-2"}, "flag --distill-temperature: distill_temperature: -2 must be > 0"},
		{"distill not a bool", "distill: yes please\n", nil, nil, `Pruning.yaml:1: distill: "yes please" is not true or false`},
		{"distill weight bounds", "distill: true\ndistill_weight: 1\nL2Norm:\n  distill_weight: 0\n", nil, []string{"--distill-temperature", "0.5"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.yaml, tt.env, tt.args...)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !errors.Is(err, ErrUsage) {
				t.Errorf("%v is not a usage error", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err, tt.want)
			}
		})
	}
}

// TestOutputKey: the output path comes from the file (a YAML integer is an
// index), the environment or the flag, in the usual precedence, and stays
// empty by default (the model's first tensor, a dict's "out").
func TestOutputKey(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		args []string
		want string
	}{
		{"default", "", nil, nil, ""},
		{"file key", "output: aux\n", nil, nil, "aux"},
		{"file index", "output: 0\n", nil, nil, "0"},
		{"file nested", "output: aux.1\n", nil, nil, "aux.1"},
		{"section", "output: aux\nL2Norm:\n  output: out\nalgorithm: L2Norm\n", nil, nil, "out"},
		{"env over file", "output: aux\n", []string{"GOPRUNER_OUTPUT=logits"}, nil, "logits"},
		{"flag over env", "", []string{"GOPRUNER_OUTPUT=logits"}, []string{"--output", "1"}, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustLoad(t, tt.yaml, tt.env, tt.args...).Output; got != tt.want {
				t.Errorf("output %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	const file = "P: 0.3\nalf: 4\npath:\n  model: file.pt\ntraining: false\ncart: [cpu]\n"
	tests := []struct {
		name string
		yaml string
		env  []string
		args []string
		key  string
		want any
		src  Source
	}{
		{"default", "", nil, nil, "P", 0.5, SourceDefault},
		{"file over default", file, nil, nil, "P", 0.3, SourceFile},
		{"env over file", file, []string{"GOPRUNER_P=0.4"}, nil, "P", 0.4, SourceEnv},
		{"flag over env", file, []string{"GOPRUNER_P=0.4"}, []string{"--P=0.6"}, "P", 0.6, SourceFlag},
		{"flag over file", file, nil, []string{"--P", "0.6"}, "P", 0.6, SourceFlag},
		{"empty env is unset", file, []string{"GOPRUNER_P="}, nil, "P", 0.3, SourceFile},
		{"env without file", "", []string{"GOPRUNER_ALF=16"}, nil, "alf", 16, SourceEnv},
		{"alf flag over env", file, []string{"GOPRUNER_ALF=16"}, []string{"--alf=32"}, "alf", 32, SourceFlag},
		{"nested env over file", file, []string{"GOPRUNER_PATH_MODEL=env.pt"}, nil, "path.model", "env.pt", SourceEnv},
		{"nested flag over env", file, []string{"GOPRUNER_PATH_MODEL=env.pt"}, []string{"--model", "flag.pt"}, "path.model", "flag.pt", SourceFlag},
		{"bool file over default", file, nil, nil, "training", false, SourceFile},
		{"bool env over file", file, []string{"GOPRUNER_TRAINING=true"}, nil, "training", true, SourceEnv},
		{"flag-named env alias", file, []string{"GOPRUNER_FINETUNE=true"}, nil, "training", true, SourceEnv},
		{"bool flag over env", file, []string{"GOPRUNER_TRAINING=true"}, []string{"--finetune=false"}, "training", false, SourceFlag},
		{"list env over file", file, []string{"GOPRUNER_CART=0,1"}, nil, "cart", []Slot{"cuda:0", "cuda:1"}, SourceEnv},
		{"list flag over env", file, []string{"GOPRUNER_CART=0,1"}, []string{"--cart", "2"}, "cart", []Slot{"cuda:2"}, SourceFlag},
		{"alias env", "", []string{"GOPRUNER_ALGORITM=l2norm"}, nil, "criterion", string(kinds.L2Norm), SourceEnv},
		{"algorithm env selects section", "L2Norm:\n  P: 0.2\nP: 0.3\n", []string{"GOPRUNER_ALGORITHM=L2Norm"}, nil, "P", 0.2, SourceFile},
		{"algorithm flag over env for section", "L2Norm:\n  P: 0.2\nP: 0.3\n", []string{"GOPRUNER_ALGORITHM=L2Norm"}, []string{"--algorithm=my_pruning"}, "P", 0.3, SourceFile},
		{"env over section", "L2Norm:\n  P: 0.2\nalgorithm: L2Norm\n", []string{"GOPRUNER_P=0.7"}, nil, "P", 0.7, SourceEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.yaml, tt.env, tt.args...)
			got := byName[tt.key].get(c)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s = %#v, want %#v", tt.key, got, tt.want)
			}
			if o := c.Origin(tt.key); o.Source != tt.src {
				t.Errorf("%s came from %v, want %v", tt.key, o, tt.src)
			}
		})
	}
}

func TestSectionOverridesTopLevel(t *testing.T) {
	const y = `P: 0.3
alf: 4
path:
  model: top.pt
  exp_save: top
my_pruning:
  P: 0.6
  path:
    model: section.pt
L2Norm:
  alf: 16
`
	tests := []struct {
		alg         string
		p           float64
		alf         int
		model, save string
	}{
		{string(kinds.AlgorithmMyPruning), 0.6, 4, "section.pt", "top"},
		{string(kinds.AlgorithmL2Norm), 0.3, 16, "top.pt", "top"},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			c := mustLoad(t, y, nil, "--algorithm", tt.alg)
			if c.P != tt.p || c.Alf != tt.alf || c.Path.Model != tt.model || c.Path.ExpSave != tt.save {
				t.Errorf("got P %v alf %d model %s exp_save %s", c.P, c.Alf, c.Path.Model, c.Path.ExpSave)
			}
			if c.Path.ModelName != strings.TrimSuffix(tt.model, ".pt") {
				t.Errorf("model_name %q not derived from %q", c.Path.ModelName, tt.model)
			}
		})
	}
}

func TestCart(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		args []string
		want []Slot
		err  string
	}{
		{"ints", "cart: [0, 0, 1]\n", nil, nil, []Slot{"cuda:0", "cuda:0", "cuda:1"}, ""},
		{"string list", "cart: \"0,0,1\"\n", nil, nil, []Slot{"cuda:0", "cuda:0", "cuda:1"}, ""},
		{"mixed", "cart: [cpu, \"cuda:1\", 2, CUDA, \"3\"]\n", nil, nil, []Slot{"cpu", "cuda:1", "cuda:2", "cuda:0", "cuda:3"}, ""},
		{"scalar int", "cart: 3\n", nil, nil, []Slot{"cuda:3"}, ""},
		{"scalar cpu", "cart: CPU\n", nil, nil, []Slot{"cpu"}, ""},
		{"flag", "", nil, []string{"--cart", "cpu,cpu"}, []Slot{"cpu", "cpu"}, ""},
		{"flag repeated", "", nil, []string{"--cart", "0", "--cart", "cuda:1"}, []Slot{"cuda:0", "cuda:1"}, ""},
		{"flag brackets", "", nil, []string{"--cart=[0, 1]"}, []Slot{"cuda:0", "cuda:1"}, ""},
		{"env", "", []string{"GOPRUNER_CART=cuda:0,cuda:1"}, nil, []Slot{"cuda:0", "cuda:1"}, ""},
		{"default follows device", "device: cuda:1\n", nil, nil, []Slot{"cuda:1"}, ""},
		{"default on cpu", "", nil, nil, []Slot{"cpu"}, ""},
		{"negative", "cart: [-1]\n", nil, nil, nil, `cart: "-1" is not a device slot`},
		{"gpu", "cart: [gpu]\n", nil, nil, nil, `cart: "gpu" is not a device slot`},
		{"empty", "cart: []\n", nil, nil, nil, "cart: [] must list at least one slot"},
		{"nested list", "cart: [[0]]\n", nil, nil, nil, "cart: item 1 is not a plain value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(t, tt.yaml, tt.env, tt.args...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Cart, tt.want) {
				t.Errorf("cart = %v, want %v", c.Cart, tt.want)
			}
		})
	}
	if s := Slot("cuda:3"); s.Device() != (device.Device{CUDA: true, Index: 3}) || SlotCPU.Device() != device.CPU {
		t.Errorf("Slot helpers wrong")
	}
}

func TestCaseAndSpelling(t *testing.T) {
	c := mustLoad(t, "p: 0.3\nl2norm:\n  P: 0.2\nALGORITHM: l2NORM\nlog_level: DEBUG\n", nil)
	if c.P != 0.2 || c.Algorithm != kinds.AlgorithmL2Norm || c.LogLevel != "debug" {
		t.Errorf("got P %v algorithm %q log_level %q", c.P, c.Algorithm, c.LogLevel)
	}
	// The old PyYAML spellings of booleans, integral floats for integers.
	c = mustLoad(t, "resize_alf: yes\ntraining: off\nalf: 8.0\nlr: 1e-3\n", nil)
	if !c.ResizeAlf || c.Finetune || c.Alf != 8 || c.Train.LR != 0.001 {
		t.Errorf("got resize_alf %v training %v alf %d lr %v", c.ResizeAlf, c.Finetune, c.Alf, c.Train.LR)
	}
	// null means "not set here".
	c = mustLoad(t, "P: 0.3\nmy_pruning:\n  P: ~\npath:\n  dataset:\n", nil)
	if c.P != 0.3 || c.Path.Dataset != "" {
		t.Errorf("null handling: P %v dataset %q", c.P, c.Path.Dataset)
	}
	// Anchors and aliases, as YAML users write them to share sections.
	c = mustLoad(t, "L2Norm: &common\n  P: 0.25\nmy_pruning: *common\n", nil)
	if c.P != 0.25 {
		t.Errorf("alias: P = %v", c.P)
	}
	if _, err := load(t, "L2Norm: &x {P: 0.2}\n<<: *x\n", nil); err == nil || !strings.Contains(err.Error(), "merge keys") {
		t.Errorf("merge key: err = %v", err)
	}
}

func TestConfigFileLookup(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(filepath.Join(dir, DefaultFileName), []byte("alf: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte("alf: 16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withConfigFlag := func(args ...string) *pflag.FlagSet {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.String("config", "", "")
		if err := RegisterFlags(fs); err != nil {
			t.Fatal(err)
		}
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	tests := []struct {
		name string
		src  Sources
		alf  int
		file string
		err  string
	}{
		{"Pruning.yaml in dir", Sources{Dir: dir}, 4, filepath.Join(dir, DefaultFileName), ""},
		{"no file in dir", Sources{Dir: t.TempDir()}, 1, "", ""},
		{"explicit file", Sources{Dir: dir, File: other}, 16, other, ""},
		{"config flag", Sources{Dir: dir, Flags: withConfigFlag("--config", other)}, 16, other, ""},
		{"env", Sources{Dir: dir, Env: []string{"GOPRUNER_CONFIG=" + other}}, 16, other, ""},
		{"flag over env", Sources{Dir: dir, Flags: withConfigFlag("--config", other), Env: []string{"GOPRUNER_CONFIG=/nonexistent"}}, 16, other, ""},
		{"config flag empty: no file", Sources{Dir: dir, Flags: withConfigFlag("--config=")}, 1, "", ""},
		{"missing explicit file", Sources{Dir: dir, File: filepath.Join(dir, "nope.yaml")}, 0, "", "nope.yaml: cannot read config file: no such file or directory"},
		{"directory as file", Sources{Dir: dir, File: dir}, 0, "", "cannot read config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.src)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want usage error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Alf != tt.alf || c.File != tt.file {
				t.Errorf("alf %d from %q, want %d from %q", c.Alf, c.File, tt.alf, tt.file)
			}
		})
	}
}

func TestExampleFile(t *testing.T) {
	path := filepath.Join("..", "..", "..", "Pruning.example.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(Sources{File: path})
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	assertSameSettings(t, c, func() *Config {
		d := Default()
		d.Path = Paths{Model: "shared/results/interface.pt", Dataset: "data/xray", ExpSave: "exp_save", ModelName: "xray_pruned"}
		d.InputShape = []int{1, 3, 224, 224}
		d.Iskl = []string{}
		return d
	}())
	for _, k := range keys {
		names := append([]string{k.leaf()}, k.aliases...)
		found := false
		for _, n := range names {
			found = found || bytes.Contains(data, []byte(n+":"))
		}
		if !found {
			t.Errorf("Pruning.example.yaml does not mention %s", k.name)
		}
		if k.flag != "" && !bytes.Contains(data, []byte("--"+k.flag)) {
			t.Errorf("Pruning.example.yaml does not give the flag --%s of %s", k.flag, k.name)
		}
	}
}

// TestBNBatchesFollowsShortlist: BatchNorm re-estimation is off by default
// and on (5 batches) for a shortlist's screen, unless a source sets it.
func TestBNBatchesFollowsShortlist(t *testing.T) {
	tests := []struct {
		args  []string
		want  int
		where string
	}{
		{nil, 0, ""},
		{[]string{"--shortlist", "2"}, 5, "from shortlist"},
		{[]string{"--shortlist", "2", "--bn-batches", "0"}, 0, "--bn-batches"},
		{[]string{"--bn-batches", "3"}, 3, "--bn-batches"},
	}
	for _, tt := range tests {
		c := mustLoad(t, oldStyle, nil, tt.args...)
		if c.BNBatches != tt.want || c.Origin("bn_batches").Where != tt.where {
			t.Errorf("%v: bn_batches %d (%v), want %d (%q)", tt.args, c.BNBatches, c.Origin("bn_batches"), tt.want, tt.where)
		}
	}
}

func TestProvenanceOutput(t *testing.T) {
	c := mustLoad(t, oldStyle, []string{"GOPRUNER_SEED=7"}, "--alf", "16")
	var buf bytes.Buffer
	if err := c.Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, re := range []string{
		`(?m)^# config file: Pruning.yaml$`,
		`(?m)^P +\= 0\.3 +\(file Pruning\.yaml:8 L2Norm\.P\)$`,
		`(?m)^alf +\= 16 +\(flag --alf\)$`,
		`(?m)^seed +\= 7 +\(env GOPRUNER_SEED\)$`,
		`(?m)^lr +\= 0\.01 +\(default\)$`,
		`(?m)^path\.dataset +\= \(not set\) +\(default\)$`,
		`(?m)^cart +\= \[cpu\] +\(default from device\)$`,
	} {
		if !regexpMatch(re, out) {
			t.Errorf("Print output does not match %s:\n%s", re, out)
		}
	}

	// The YAML dump is a Pruning.yaml that loads back to the same settings.
	buf.Reset()
	if err := c.WriteYAML(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := Load(Sources{Content: buf.Bytes(), File: "dump.yaml"})
	if err != nil {
		t.Fatalf("YAML dump does not load back: %v\n%s", err, buf.String())
	}
	assertSameSettings(t, back, c)
	if !strings.Contains(buf.String(), "# flag --alf") {
		t.Errorf("YAML dump lacks source comments:\n%s", buf.String())
	}

	buf.Reset()
	if err := c.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var d struct {
		File    string
		Config  map[string]any
		Sources map[string]string
	}
	if err := json.Unmarshal(buf.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Config["P"] != 0.3 || d.Config["path"].(map[string]any)["model_name"] != "xray_pruned" || d.Sources["seed"] != "env GOPRUNER_SEED" {
		t.Errorf("JSON dump wrong:\n%s", buf.String())
	}
}

func TestFingerprint(t *testing.T) {
	base := mustLoad(t, oldStyle, nil)
	saved := base.Fingerprint()
	raw, err := json.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	var reloaded Fingerprint
	if err := json.Unmarshal(raw, &reloaded); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		key  string // first differing key; "" = resume allowed
	}{
		{"same", nil, ""},
		{"training settings may change", []string{"--lr", "0.1", "--device", "cuda", "--epochs", "5", "--out", "x.pt"}, ""},
		{"model path spelt differently", []string{"--model", "./shared/results/interface.pt"}, ""},
		{"P", []string{"--P", "0.4"}, "P"},
		{"alf and seed", []string{"--alf", "4", "--seed", "3"}, "alf"},
		{"iskl", []string{"--iskl", "layer2.0.conv1"}, "iskl"},
		{"input shape", []string{"--input-shape", "1,3,224,224"}, "input_shape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, oldStyle, nil, tt.args...)
			err := CheckResume(reloaded, c)
			if tt.key == "" {
				if err != nil {
					t.Fatalf("resume refused: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Key != tt.key || !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage error naming %s", err, tt.key)
			}
		})
	}
	if err := CheckResume(Fingerprint{}, base); err == nil || !strings.Contains(err.Error(), "(not recorded)") {
		t.Errorf("empty saved fingerprint: err = %v", err)
	}
}

func TestFlagsDefinedByTheCLI(t *testing.T) {
	// The CLI may define some flags itself with pflag's own types;
	// RegisterFlags must skip them and Load must read them.
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Float64("P", 0.5, "")
	fs.StringSlice("iskl", nil, "")
	fs.IntSlice("input-shape", nil, "")
	fs.Bool("resize-alf", false, "")
	if err := RegisterFlags(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--P=0.25", "--iskl", "a.b", "--iskl", "c", "--input-shape", "1,1,8,8", "--resize-alf", "--short-steps", "5"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Sources{Flags: fs, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if c.P != 0.25 || !reflect.DeepEqual(c.Iskl, []string{"a.b", "c"}) || !reflect.DeepEqual(c.InputShape, []int{1, 1, 8, 8}) || !c.ResizeAlf || c.ShortTermSteps != 5 {
		t.Errorf("got P %v iskl %v input_shape %v resize_alf %v short %d", c.P, c.Iskl, c.InputShape, c.ResizeAlf, c.ShortTermSteps)
	}
	// A flag that was not set keeps the lower layers, whatever its pflag default.
	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Float64("P", 0.9, "")
	c, err = Load(Sources{Flags: fs, Content: []byte("P: 0.3\n")})
	if err != nil || c.P != 0.3 {
		t.Errorf("unset flag overrode the file: P %v err %v", c.P, err)
	}
	if err := RegisterFlags(pflag.NewFlagSet("t", pflag.ContinueOnError), "P", "nope"); err == nil {
		t.Errorf("RegisterFlags accepted an unknown key")
	}
	sub := pflag.NewFlagSet("t", pflag.ContinueOnError)
	if err := RegisterFlags(sub, "path.model", "input_shape"); err != nil {
		t.Fatal(err)
	}
	if sub.Lookup("model") == nil || sub.Lookup("input-shape") == nil || sub.Lookup("P") != nil {
		t.Errorf("RegisterFlags with a key list defined the wrong flags")
	}
}

func TestEnvWarnings(t *testing.T) {
	c := mustLoad(t, "", []string{"GOPRUNER_ALFF=8", "GOPRUNER_LIBTORCH=/opt/torch", "PATH=/bin", "GOPRUNER_CONFIG="})
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "GOPRUNER_ALFF") || !strings.Contains(c.Warnings[0], "did you mean GOPRUNER_ALF?") {
		t.Errorf("warnings = %q", c.Warnings)
	}
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, "", nil)
	d := Default()
	assertSameSettings(t, c, d)
	if c.Algorithm != kinds.AlgorithmMyPruning || c.P != 0.5 || c.Alf != 1 || c.DeltaCrop != 0.2 || c.Criterion != kinds.TaylorFOWeight ||
		!c.Finetune || c.Select != kinds.SelectAcc || c.Step != kinds.StepMACs || c.ShortTermSteps != 20 || c.LongTermEpochs != 1 ||
		!c.CommonBatches || c.BNBatches != 0 || c.TieBreak != kinds.TieBreakNone ||
		c.TaylorBatches != 10 || c.Train.Epochs != 1 || c.Train.LR != 0.01 || c.Train.Momentum != 0.9 || c.Train.WeightDecay != 5e-4 ||
		c.Train.Optimizer != OptimizerSGD || c.Train.BatchSize != 32 || c.ValFraction != 0.1 || c.Device != "cpu" ||
		c.Path.ExpSave != "exp_save" || c.LogLevel != "info" || c.LogFormat != LogFormatText || !reflect.DeepEqual(c.Cart, []Slot{SlotCPU}) {
		t.Errorf("defaults wrong: %+v", c)
	}
	for _, e := range c.Entries() {
		if e.Origin.Source != SourceDefault {
			t.Errorf("%s from %v without any source", e.Key, e.Origin)
		}
	}
	// Configs must not share slices: changing one leaves the next load alone.
	c.Cart[0] = "cuda:9"
	if mustLoad(t, "", nil).Cart[0] != SlotCPU {
		t.Errorf("Cart shared between loads")
	}
	if len(Keys()) != len(keys) || Keys()[0].Name != "algorithm" {
		t.Errorf("Keys() wrong")
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func TestConcurrentLoads(t *testing.T) {
	// Load keeps no global state (one local viper per call): run it from
	// several goroutines under -race.
	done := make(chan error)
	for i := range 8 {
		go func() {
			c, err := Load(Sources{Content: []byte(oldStyle), Env: []string{"GOPRUNER_SEED=" + strconv.Itoa(i)}})
			if err == nil && c.Seed != int64(i) {
				err = errors.New("seed from another goroutine's load")
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestInputShapeRanks: every rank whose channel dim is dim 1 is accepted,
// from every source.
func TestInputShapeRanks(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		args []string
		want []int
	}{
		{"input_shape: [4, 20]\n", nil, []int{4, 20}},
		{"", []string{"--input-shape", "1,2,256"}, []int{1, 2, 256}},
		{"input_shape: [1, 3, 32, 32]\n", nil, []int{1, 3, 32, 32}},
		{"input_shape: [1, 3, 4, 32, 32]\n", nil, []int{1, 3, 4, 32, 32}},
	} {
		c, err := load(t, tc.yaml, nil, tc.args...)
		if err != nil {
			t.Fatalf("%q %v: %v", tc.yaml, tc.args, err)
		}
		if !reflect.DeepEqual(c.InputShape, tc.want) {
			t.Errorf("%q %v: input_shape %v, want %v", tc.yaml, tc.args, c.InputShape, tc.want)
		}
	}
}

// Fingerprint keys added later are recorded only off their default, so a
// checkpoint that predates them resumes under the defaults and is refused,
// naming the key, under anything else.
func TestFingerprintLaterKeys(t *testing.T) {
	base := mustLoad(t, oldStyle, nil)
	saved := base.Fingerprint()
	for k, legacy := range laterKeys {
		_, ok := saved[k]
		if changed := formatValue(byName[k].def) != legacy; ok != changed {
			t.Errorf("%s recorded in the defaults' fingerprint: %v; its default changed since it was added: %v", k, ok, changed)
		}
	}
	if err := CheckResume(saved, base); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	decay := mustLoad(t, oldStyle, nil, "--delta-schedule", "decay", "--delta-decay", "0.9")
	err := CheckResume(saved, decay)
	var e *Error
	if !errors.As(err, &e) || e.Key != "delta_schedule" || !strings.Contains(err.Error(), "checkpoint has constant, now decay") ||
		!strings.Contains(err.Error(), "also differ: delta_decay") {
		t.Errorf("err = %v, want delta_schedule named with both values", err)
	}
	if err := CheckResume(decay.Fingerprint(), base); err == nil || !strings.Contains(err.Error(), "checkpoint has decay, now constant") {
		t.Errorf("back to the default: err = %v", err)
	}
	if err := CheckResume(decay.Fingerprint(), decay); err != nil {
		t.Errorf("same decay refused: %v", err)
	}
	// The candidates' validation subset decides which candidate wins.
	// A distilled search is not resumed without distillation, nor with
	// another temperature or weight; without distillation those two are
	// never used, so they do not stop a resume.
	distill := mustLoad(t, oldStyle, nil, "--distill")
	if err := CheckResume(distill.Fingerprint(), base); !errors.As(err, &e) || e.Key != "distill" ||
		!strings.Contains(err.Error(), "checkpoint has true, now false") {
		t.Errorf("distill on, resumed off: err = %v", err)
	}
	if err := CheckResume(saved, distill); !errors.As(err, &e) || e.Key != "distill" {
		t.Errorf("distill off, resumed on: err = %v", err)
	}
	hot := mustLoad(t, oldStyle, nil, "--distill", "--distill-temperature", "2")
	if err := CheckResume(distill.Fingerprint(), hot); !errors.As(err, &e) || e.Key != "distill_temperature" {
		t.Errorf("distill temperature 4 then 2: err = %v", err)
	}
	heavy := mustLoad(t, oldStyle, nil, "--distill", "--distill-weight", "0.9")
	if err := CheckResume(distill.Fingerprint(), heavy); !errors.As(err, &e) || e.Key != "distill_weight" {
		t.Errorf("distill weight 0.5 then 0.9: err = %v", err)
	}
	idle := mustLoad(t, oldStyle, nil, "--distill-temperature", "2", "--distill-weight", "0.9")
	if err := CheckResume(saved, idle); err != nil {
		t.Errorf("temperature and weight without distill refused: %v", err)
	}
	// max_group_cut shapes step macs candidates only: a search that steps
	// by channels resumes whatever it is set to.
	chans := mustLoad(t, oldStyle, nil, "--step", "channels")
	if err := CheckResume(chans.Fingerprint(), mustLoad(t, oldStyle, nil, "--step", "channels", "--max-group-cut", "0.25")); err != nil {
		t.Errorf("max_group_cut changed under step channels refused: %v", err)
	}
	macs := mustLoad(t, oldStyle, nil, "--step", "macs")
	if err := CheckResume(macs.Fingerprint(), mustLoad(t, oldStyle, nil, "--step", "macs", "--max-group-cut", "0.25")); !errors.As(err, &e) || e.Key != "max_group_cut" {
		t.Errorf("max_group_cut 0.5 then 0.25 under step macs: err = %v", err)
	}
	// The candidates' validation subset decides which candidate wins.
	for _, args := range [][]string{{"--eval-samples", "500"}, {"--tie-break", "loss"}, {"--common-batches=false"}} {
		c := mustLoad(t, oldStyle, nil, args...)
		key, _, _ := strings.Cut(strings.ReplaceAll(strings.TrimPrefix(args[0], "--"), "-", "_"), "=")
		if err := CheckResume(saved, c); !errors.As(err, &e) || e.Key != key {
			t.Errorf("%v: err = %v, want one naming %s", args, err, key)
		}
	}
}

// TestLaterKeysLegacyValues: every later fingerprint key's legacy value is
// a value the key accepts, written as Fingerprint writes it, and it is the
// key's default unless the default changed on purpose (those then appear in
// a fresh run's fingerprint, so an older checkpoint is refused).
func TestLaterKeysLegacyValues(t *testing.T) {
	changed := map[string]bool{"common_batches": true, "max_group_cut": true, "shortlist": true, "commit_top": true}
	for name, legacy := range laterKeys {
		k, ok := byName[name]
		if !ok {
			t.Errorf("later key %q is not a config key", name)
			continue
		}
		if def := formatValue(k.def); (def == legacy) == changed[name] {
			t.Errorf("%s: legacy value %q, default %q; changed on purpose: %v", name, legacy, def, changed[name])
		}
	}
}
