// Package config loads gopruner's settings: Pruning.yaml in the layout of the
// original Python tool, GOPRUNER_* environment variables and command-line
// flags, with the precedence flags > environment > file > defaults.
//
// The file is parsed here (go.yaml.in/yaml/v3) rather than by viper because
// its keys are case-sensitive as the old tool wrote them (P, L2Norm), because
// unknown keys must be reported with their section path and line, and because
// the section of the selected algorithm overrides the top level. Viper, one
// local instance per Load, then merges the validated layers. Every effective
// value remembers its origin for `gopruner config --print`.
//
// The package is pure Go and has no dependency on libtorch.
package config

import (
	"fmt"
	"strings"

	"github.com/gopruner/gopruner/internal/core/device"
	"github.com/gopruner/gopruner/internal/core/kinds"
)

// Optimizers (the `optimizer` key).
const (
	OptimizerSGD  = "sgd"
	OptimizerAdam = "adam"
)

// Log formats (the `log_format` key).
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// DefaultFileName is the configuration file used when none is named.
const DefaultFileName = "Pruning.yaml"

// EnvPrefix starts every environment variable this package reads.
const EnvPrefix = "GOPRUNER_"

// EnvConfigFile names the configuration file when no --config flag does.
const EnvConfigFile = EnvPrefix + "CONFIG"

// Config is the effective configuration of one run. Load fills it; the field
// comments give the YAML key in brackets.
type Config struct {
	Algorithm kinds.Algorithm // [algorithm]
	Path      Paths           // [path.*]

	P              float64         // [P] fraction of MACs to remove, in (0,1)
	Alf            int             // [alf] channel counts are rounded down to multiples of Alf (1 = no rounding)
	Iskl           []string        // [iskl] module paths never pruned
	Cart           []Slot          // [cart] device slots for my_pruning candidates
	ResizeAlf      bool            // [resize_alf] final pass rounding every prunable group to Alf
	DeltaCrop      float64         // [delta_crop] share of a group's channels one my_pruning candidate removes, in (0,1)
	Criterion      kinds.Criterion // [criterion, alias algoritm]
	Global         bool            // [global] L2Norm: rank filters across the whole model
	Latency        bool            // [latency] measure the original's and the pruned model's forward latency for the report
	Select         kinds.Select    // [select]
	Step           kinds.Step      // [step]
	DeltaSchedule  kinds.Schedule  // [delta_schedule] constant or decaying step over the iterations
	DeltaDecay     float64         // [delta_decay] per-iteration factor of the decaying schedule, in (0,1]
	MaxGroupCut    float64         // [max_group_cut] largest share of a group's channels one step-macs candidate removes, in (0,1]
	Shortlist      int             // [shortlist] candidates short-term fine-tuned per iteration after a screen of all; 0 = all, no screen; -1 = auto (by the model's group count, at run time)
	CommitTop      int             // [commit_top] best candidates of an iteration committed together; 1 = the winner alone; -1 = auto (by the model's group count, at run time)
	CommonBatches  bool            // [common_batches] every candidate of an iteration fine-tunes on the same batches
	BNBatches      int             // [bn_batches] batches BatchNorm statistics are re-estimated on after each cut; 0 = off
	TieBreak       kinds.TieBreak  // [tie_break] rule among candidates within one standard error of the best
	Target         kinds.Target    // [target] the resource my_pruning removes P of: macs or latency
	LatencyDevice  string          // [latency_device] where target: latency measures: cpu or cuda:N
	LatencyThreads int             // [latency_threads] CPU threads the latency is measured with
	LatencyBatch   int             // [latency_batch] batch size the latency is measured at
	ShortTermSteps int             // [short_term_steps] fine-tune steps per my_pruning candidate
	LongTermEpochs int             // [long_term_epochs] fine-tune epochs after my_pruning
	Rewind         bool            // [rewind] the long-term fine-tune starts from the original weights at the searched structure
	TaylorBatches  int             // [taylor_batches] batches summed for Taylor scores
	EvalSamples    int             // [eval_samples] val samples candidates are validated on; 0 = all

	// [broker] the JetStream broker of my_pruning: "" embedded, "direct"
	// none, else a nats:// or tls:// URL.
	Broker           string
	BrokerToken      string  // [broker_token]
	BrokerTLSCert    string  // [broker_tls_cert]
	BrokerTLSKey     string  // [broker_tls_key]
	BrokerTLSCA      string  // [broker_tls_ca]
	Insecure         bool    // [insecure] allow plaintext to a remote broker
	BrokerAckWait    float64 // [broker_ack_wait] seconds
	BrokerMaxDeliver int     // [broker_max_deliver]

	Finetune bool  // [training] fine-tune after pruning
	Train    Train // [epochs, lr, ...]

	// [distill] the fine-tunes also learn the original model's softened
	// outputs; DistillTemperature [distill_temperature] is T > 0 and
	// DistillWeight [distill_weight] the KL term's share w in [0,1].
	Distill            bool
	DistillTemperature float64
	DistillWeight      float64

	InputShape []int // [input_shape] the example input, [N,F] to [N,C,D,H,W]; nil when not given
	// [output] the prediction among the model's output tensors: a dict key,
	// NamedTuple field or tuple/list index, dotted for nested outputs; "" =
	// the first tensor depth-first, a dict's "out" entry first.
	Output      string
	Mean        []float64 // [mean] per-channel normalisation; nil = the data loader's default
	Std         []float64 // [std] per-channel normalisation; nil = the data loader's default
	ValFraction float64   // [val_fraction] share of the dataset held out for validation, in [0,1)
	// [allow_external_paths] data.csv rows may be absolute or lead out of
	// the dataset directory, and ImageFolder symlinks anywhere.
	AllowExternalPaths bool

	Device  string // [device] "cpu", "cuda" or "cuda:N"
	Threads int    // [threads] intra-op threads (OpenBLAS's too), 0 = one per CPU
	NCHW    bool   // [nchw] never feed channels-last batches
	// [amp] mixed precision of CUDA fine-tuning and evaluation: off, bf16
	// or fp16 (with dynamic loss scaling).
	AMP string
	// [cudnn_benchmark] cuDNN times its algorithms per input shape and
	// keeps the fastest (CUDA only).
	CUDNNBenchmark bool
	Seed           int64 // [seed]
	Workers        int   // [workers] image decode workers, 0 = one per CPU

	Out     string // [out] pruned model path; "" = under Path.ExpSave/Path.ModelName
	PlanOut string // [plan_out] plan JSON path; "" = none
	Resume  bool   // [resume] continue from the checkpoint in the experiment directory

	LogLevel  string // [log_level] trace, debug, info, warn or error
	LogFormat string // [log_format] LogFormatText or LogFormatJSON

	// File is the configuration file that was read, "" when none was.
	File string
	// Warnings are problems that did not stop the load (a GOPRUNER_* variable
	// that looks like a misspelt key); the CLI should log them.
	Warnings []string

	origins map[string]Origin
}

// Paths are the old tool's `path:` section.
type Paths struct {
	Model     string // [path.model] input TorchScript model
	Dataset   string // [path.dataset] dataset directory; "" = none
	ExpSave   string // [path.exp_save] experiments directory
	ModelName string // [path.model_name] run name; defaults to Model's base name without extension
}

// Train holds the fine-tuning settings.
type Train struct {
	Epochs      int     // [epochs]
	LR          float64 // [lr]
	Momentum    float64 // [momentum] SGD momentum, in [0,1)
	WeightDecay float64 // [weight_decay]
	Optimizer   string  // [optimizer] OptimizerSGD or OptimizerAdam
	BatchSize   int     // [batch_size]
	Nesterov    bool    // [nesterov] SGD Nesterov momentum
	WarmupSteps int     // [warmup_steps] linear learning-rate warm-up
	Cosine      bool    // [cosine] cosine learning-rate decay after warm-up
}

// Slot is one place where a my_pruning candidate is evaluated: "cpu" or
// "cuda:N". The old tool wrote GPU slots as bare integers; ParseSlot accepts
// those and always yields the canonical form.
type Slot string

// AMP settings.
const (
	AMPOff  = "off"
	AMPBF16 = "bf16"
	AMPFP16 = "fp16"
)

// SlotCPU is the CPU slot.
const SlotCPU Slot = "cpu"

// ParseSlot accepts "cpu", "cuda" (= cuda:0), "cuda:N" and "N" (= cuda:N).
func ParseSlot(s string) (Slot, error) {
	d, err := device.ParseSlot(s)
	if err != nil {
		return "", fmt.Errorf("%s is not a device slot (want a GPU number N, \"cuda:N\" or \"cpu\")", clip(s))
	}
	return Slot(d.String()), nil
}

// Device is the device the slot names.
func (s Slot) Device() device.Device {
	d, _ := device.ParseSlot(string(s))
	return d
}

// parseDevice accepts what libtorch's device strings accept for the backends
// gopruner supports, case-insensitively, and keeps "cuda" without an index
// because libtorch gives it its own meaning (the current device).
func parseDevice(s string) (string, error) {
	d, err := device.ParseName(s)
	if err != nil {
		return "", fmt.Errorf("%s is not a device (want cpu, cuda or cuda:N)", clip(s))
	}
	return d, nil
}

// Default returns the configuration that applies when no file, variable or
// flag says otherwise.
func Default() *Config {
	c := &Config{origins: map[string]Origin{}}
	for _, k := range keys {
		if k.def != nil {
			k.set(c, cloneValue(k.def))
		}
		c.origins[k.name] = Origin{Source: SourceDefault}
	}
	c.deriveDefaults(map[string]bool{})
	return c
}

// deriveDefaults fills the keys whose default depends on other keys; set
// holds the keys that some source gave explicitly.
func (c *Config) deriveDefaults(set map[string]bool) {
	if !set["path.model_name"] && c.Path.Model != "" {
		c.Path.ModelName = modelBaseName(c.Path.Model)
		c.setOrigin("path.model_name", Origin{Source: SourceDefault, Where: "from path.model"})
	}
	if !set["bn_batches"] && c.Shortlist > 0 {
		// A shortlist's screen validates cut models before any fine-tune,
		// while their BatchNorm statistics are still the uncut model's.
		// Otherwise the short-term fine-tune replaces them before the
		// validation, and re-estimating them first measured no better
		// (docs/benchmarks.md, "Search quality (row 9)").
		c.BNBatches = 5
		c.setOrigin("bn_batches", Origin{Source: SourceDefault, Where: "from shortlist"})
	}
	if !set["cart"] {
		// One slot on the chosen device: a user who asks for --device cuda:1
		// expects the candidates there, not on the CPU.
		slot := SlotCPU
		if s, err := ParseSlot(c.Device); err == nil {
			slot = s
		}
		c.Cart = []Slot{slot}
		c.setOrigin("cart", Origin{Source: SourceDefault, Where: "from device"})
	}
}

func (c *Config) setOrigin(key string, o Origin) {
	if c.origins == nil {
		c.origins = map[string]Origin{}
	}
	c.origins[key] = o
}

// modelBaseName is the old tool's default run name: "a/b/resnet.pt" → "resnet".
func modelBaseName(p string) string {
	p = strings.TrimRight(strings.ReplaceAll(p, "\\", "/"), "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	if i := strings.LastIndexByte(p, '.'); i > 0 {
		p = p[:i]
	}
	return p
}
