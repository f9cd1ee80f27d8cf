package config

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

// kind is the type of a key's value. Values travel between layers in one
// canonical Go type per kind (see canonical), so viper's merge never has to
// convert them.
type kind int

const (
	kString  kind = iota // string
	kEnum                // string, one of spec.enum (matched case-insensitively)
	kDevice              // string: cpu, cuda, cuda:N
	kFloat               // float64
	kInt                 // int
	kBool                // bool
	kStrings             // []string
	kInts                // []int
	kFloats              // []float64
	kSlots               // []Slot
)

func (k kind) String() string {
	switch k {
	case kString:
		return "string"
	case kEnum:
		return "choice"
	case kDevice:
		return "device"
	case kFloat:
		return "float"
	case kInt:
		return "int"
	case kBool:
		return "bool"
	case kStrings:
		return "strings"
	case kInts:
		return "ints"
	case kFloats:
		return "floats"
	case kSlots:
		return "slots"
	}
	return "value"
}

func (k kind) isList() bool {
	return k == kStrings || k == kInts || k == kFloats || k == kSlots
}

// spec describes one configuration key.
type spec struct {
	name    string   // canonical YAML key; "path.x" for keys of the path: section
	aliases []string // other YAML spellings of the leaf (the old tool's "algoritm")
	flag    string   // flag name without dashes
	env     []string // extra environment names besides the one derived from name
	kind    kind
	enum    []string // canonical spellings for kEnum
	def     any      // default in the kind's canonical type; nil = unset or derived
	// check returns "" or what is wrong with a value already of the right type.
	check   func(v any) string
	topOnly bool // not accepted inside an algorithm section
	help    string
	get     func(c *Config) any
	set     func(c *Config, v any)
}

// leaf is the key as written inside its mapping ("model" for "path.model").
func (s *spec) leaf() string {
	if rest, ok := strings.CutPrefix(s.name, "path."); ok {
		return rest
	}
	return s.name
}

func (s *spec) inPath() bool { return strings.HasPrefix(s.name, "path.") }

// envNames are the variables that set the key: GOPRUNER_ + upper snake of the
// YAML key (GOPRUNER_PATH_MODEL), of each alias, and any extras.
func (s *spec) envNames() []string {
	n := []string{envName(s.name)}
	for _, a := range s.aliases {
		n = append(n, envName(a))
	}
	return append(n, s.env...)
}

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Range checks, worded for "<value> <message>".

func openUnit(v any) string {
	if f := v.(float64); !(f > 0 && f < 1) {
		return "is outside (0,1)"
	}
	return ""
}

func halfOpenUnit(v any) string {
	if f := v.(float64); !(f >= 0 && f < 1) {
		return "is outside [0,1)"
	}
	return ""
}

func unitLeftOpen(v any) string {
	if f := v.(float64); !(f > 0 && f <= 1) {
		return "is outside (0,1]"
	}
	return ""
}

func closedUnit(v any) string {
	if f := v.(float64); !(f >= 0 && f <= 1) {
		return "is outside [0,1]"
	}
	return ""
}

func positiveFloat(v any) string {
	if v.(float64) <= 0 {
		return "must be > 0"
	}
	return ""
}

func nonNegFloat(v any) string {
	if v.(float64) < 0 {
		return "must be >= 0"
	}
	return ""
}

func intAtLeast(n int) func(any) string {
	return func(v any) string {
		if v.(int) < n {
			return fmt.Sprintf("must be an integer >= %d", n)
		}
		return ""
	}
}

func layerNames(v any) string {
	for _, s := range v.([]string) {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t") {
			return fmt.Sprintf("has %s, which is not a module path like layer1.0.conv1", clip(s))
		}
	}
	return ""
}

// brokerURL accepts "" (embedded), "direct" and nats:// or tls:// URLs;
// whether a plaintext one may reach another host is decided at connect
// time, with --insecure known.
func brokerURL(v any) string {
	s := v.(string)
	if s == "" || s == "direct" || strings.HasPrefix(s, "nats://") || strings.HasPrefix(s, "tls://") {
		return ""
	}
	return "is not nats://host:port, tls://host:port or direct"
}

func nonEmptySlots(v any) string {
	if len(v.([]Slot)) == 0 {
		return "must list at least one slot"
	}
	return ""
}

// inputShape accepts the ranks whose channel dim is dim 1: [N,F] (MLP
// heads), [N,C,L] (1-D signals), [N,C,H,W] (images) and [N,C,D,H,W]
// (volumes, video).
func inputShape(v any) string {
	s := v.([]int)
	if len(s) < 2 || len(s) > 5 {
		dims := "dimensions"
		if len(s) == 1 {
			dims = "dimension"
		}
		return fmt.Sprintf("has %d %s, want 2 to 5: N,F or N,C,L or N,C,H,W or N,C,D,H,W", len(s), dims)
	}
	for _, d := range s {
		if d <= 0 {
			return "must have positive dimensions"
		}
	}
	return ""
}

func channelValues(positive bool) func(any) string {
	return func(v any) string {
		f := v.([]float64)
		if len(f) == 0 {
			return "must list one value per input channel"
		}
		for _, x := range f {
			if positive && x <= 0 {
				return "must be > 0 for every channel"
			}
		}
		return ""
	}
}

func nonEmptyString(v any) string {
	if v.(string) == "" {
		return "must not be empty"
	}
	return ""
}

// outputPath checks the form of an output path: dot-separated parts, none
// empty or padded. Whether the model's output has it is known only once the
// model runs (the shim names the paths it has).
func outputPath(v any) string {
	s := v.(string)
	if s == "" {
		return ""
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return "has an empty part; write a dict key, NamedTuple field or index, dotted for nested outputs (out, aux.0)"
		}
		if strings.TrimSpace(part) != part {
			return fmt.Sprintf("has a part with surrounding spaces (%s)", clip(part))
		}
	}
	return ""
}

// keys lists every configuration key in the order of Pruning.example.yaml and
// of `gopruner config --print`.
var keys = []*spec{
	{name: "algorithm", flag: "algorithm", kind: kEnum, enum: kinds.Names(kinds.Algorithms),
		def: string(kinds.AlgorithmMyPruning), topOnly: true,
		help: "pruning algorithm: my_pruning (NetAdapt) or L2Norm (one shot)",
		get:  func(c *Config) any { return string(c.Algorithm) }, set: func(c *Config, v any) { c.Algorithm = kinds.Algorithm(v.(string)) }},

	{name: "path.model", flag: "model", kind: kString,
		help: "input TorchScript model (never modified)",
		get:  func(c *Config) any { return c.Path.Model }, set: func(c *Config, v any) { c.Path.Model = v.(string) }},
	{name: "path.dataset", flag: "dataset", kind: kString,
		help: "dataset directory (data.csv or class folders)",
		get:  func(c *Config) any { return c.Path.Dataset }, set: func(c *Config, v any) { c.Path.Dataset = v.(string) }},
	{name: "path.exp_save", flag: "exp-save", kind: kString, def: "exp_save", check: nonEmptyString,
		help: "experiments directory; a run writes exp_save/model_name/",
		get:  func(c *Config) any { return c.Path.ExpSave }, set: func(c *Config, v any) { c.Path.ExpSave = v.(string) }},
	{name: "path.model_name", flag: "model-name", kind: kString, check: nonEmptyString,
		help: "run name (default: the model file's base name without extension)",
		get:  func(c *Config) any { return c.Path.ModelName }, set: func(c *Config, v any) { c.Path.ModelName = v.(string) }},

	{name: "P", flag: "P", kind: kFloat, def: 0.5, check: openUnit,
		help: "fraction of MACs to remove, 0<P<1",
		get:  func(c *Config) any { return c.P }, set: func(c *Config, v any) { c.P = v.(float64) }},
	{name: "alf", flag: "alf", kind: kInt, def: 1, check: intAtLeast(1),
		help: "round remaining channel counts down to multiples of alf (1 = no rounding)",
		get:  func(c *Config) any { return c.Alf }, set: func(c *Config, v any) { c.Alf = v.(int) }},
	{name: "iskl", flag: "iskl", kind: kStrings, check: layerNames,
		help: "module paths never pruned, e.g. layer1.0.conv1",
		get:  func(c *Config) any { return c.Iskl }, set: func(c *Config, v any) { c.Iskl = v.([]string) }},
	{name: "cart", flag: "cart", kind: kSlots, check: nonEmptySlots,
		help: "device slots for my_pruning candidates: N = cuda:N, cpu, cuda:N (default: one slot on device)",
		get:  func(c *Config) any { return c.Cart }, set: func(c *Config, v any) { c.Cart = v.([]Slot) }},
	{name: "broker", flag: "broker", kind: kString, check: brokerURL,
		help: "my_pruning's JetStream broker: nats://host:4222 or tls://host:4222 (default: an embedded one on loopback with in-process workers; direct: no broker)",
		get:  func(c *Config) any { return c.Broker }, set: func(c *Config, v any) { c.Broker = v.(string) }},
	{name: "broker_token", flag: "broker-token", kind: kString,
		help: "token of the broker (a listening broker requires one)",
		get:  func(c *Config) any { return c.BrokerToken }, set: func(c *Config, v any) { c.BrokerToken = v.(string) }},
	{name: "broker_tls_cert", flag: "broker-tls-cert", kind: kString,
		help: "TLS certificate (PEM) the broker serves, or the client presents",
		get:  func(c *Config) any { return c.BrokerTLSCert }, set: func(c *Config, v any) { c.BrokerTLSCert = v.(string) }},
	{name: "broker_tls_key", flag: "broker-tls-key", kind: kString,
		help: "key (PEM) of broker_tls_cert",
		get:  func(c *Config) any { return c.BrokerTLSKey }, set: func(c *Config, v any) { c.BrokerTLSKey = v.(string) }},
	{name: "broker_tls_ca", flag: "broker-tls-ca", kind: kString,
		help: "CA (PEM) that verifies the broker (clients) or client certificates (broker)",
		get:  func(c *Config) any { return c.BrokerTLSCA }, set: func(c *Config, v any) { c.BrokerTLSCA = v.(string) }},
	{name: "insecure", flag: "insecure", kind: kBool, def: false,
		help: "allow a plaintext (nats://) broker on another host",
		get:  func(c *Config) any { return c.Insecure }, set: func(c *Config, v any) { c.Insecure = v.(bool) }},
	{name: "broker_ack_wait", flag: "broker-ack-wait", kind: kFloat, def: 30.0, check: positiveFloat,
		help: "seconds a worker may go silent before its candidate is given to another (workers heartbeat every third of it)",
		get:  func(c *Config) any { return c.BrokerAckWait }, set: func(c *Config, v any) { c.BrokerAckWait = v.(float64) }},
	{name: "broker_max_deliver", flag: "broker-max-deliver", kind: kInt, def: 3, check: intAtLeast(1),
		help: "deliveries of one candidate before it is reported failed",
		get:  func(c *Config) any { return c.BrokerMaxDeliver }, set: func(c *Config, v any) { c.BrokerMaxDeliver = v.(int) }},
	{name: "resize_alf", flag: "resize-alf", kind: kBool, def: false,
		help: "final pass rounding every prunable group to a multiple of alf",
		get:  func(c *Config) any { return c.ResizeAlf }, set: func(c *Config, v any) { c.ResizeAlf = v.(bool) }},
	{name: "delta_crop", flag: "delta-crop", kind: kFloat, def: 0.2, check: openUnit,
		help: "share of the model's MACs (step macs) or of a group's channels (step channels) one my_pruning candidate removes, 0<x<1",
		get:  func(c *Config) any { return c.DeltaCrop }, set: func(c *Config, v any) { c.DeltaCrop = v.(float64) }},
	{name: "criterion", aliases: []string{"algoritm"}, flag: "criterion", kind: kEnum,
		enum: kinds.Names(kinds.Criteria), def: string(kinds.TaylorFOWeight),
		help: "filter ranking of my_pruning: TaylorFOWeight or L2Norm (old key: algoritm)",
		get:  func(c *Config) any { return string(c.Criterion) }, set: func(c *Config, v any) { c.Criterion = kinds.Criterion(v.(string)) }},
	{name: "training", flag: "finetune", env: []string{EnvPrefix + "FINETUNE"}, kind: kBool, def: true,
		help: "fine-tune after pruning",
		get:  func(c *Config) any { return c.Finetune }, set: func(c *Config, v any) { c.Finetune = v.(bool) }},
	{name: "global", flag: "global", kind: kBool, def: false,
		help: "L2Norm: rank filters across the whole model instead of a uniform ratio",
		get:  func(c *Config) any { return c.Global }, set: func(c *Config, v any) { c.Global = v.(bool) }},
	{name: "latency", flag: "latency", kind: kBool, def: false,
		help: "measure the original's and the pruned model's forward latency side by side for the report (costs some forwards of each)",
		get:  func(c *Config) any { return c.Latency }, set: func(c *Config, v any) { c.Latency = v.(bool) }},
	{name: "select", flag: "select", kind: kEnum, enum: kinds.Names(kinds.Selects), def: string(kinds.SelectAcc),
		help: "my_pruning keeps the candidate with the best acc, acc_per_mac, or the lowest validation loss (loss)",
		get:  func(c *Config) any { return string(c.Select) }, set: func(c *Config, v any) { c.Select = kinds.Select(v.(string)) }},
	{name: "step", flag: "step", kind: kEnum, enum: kinds.Names(kinds.Steps), def: string(kinds.StepMACs),
		help: "delta_crop is a share of a group's channels or of the model's MACs",
		get:  func(c *Config) any { return string(c.Step) }, set: func(c *Config, v any) { c.Step = kinds.Step(v.(string)) }},
	{name: "delta_schedule", flag: "delta-schedule", kind: kEnum, enum: kinds.Names(kinds.Schedules), def: string(kinds.ScheduleConstant),
		help: "my_pruning step over the iterations: constant delta_crop, or decay (delta_crop·delta_decay^(i−1) in iteration i)",
		get:  func(c *Config) any { return string(c.DeltaSchedule) }, set: func(c *Config, v any) { c.DeltaSchedule = kinds.Schedule(v.(string)) }},
	{name: "delta_decay", flag: "delta-decay", kind: kFloat, def: 0.96, check: unitLeftOpen,
		help: "factor the step shrinks by per iteration under delta_schedule: decay, 0<x<=1",
		get:  func(c *Config) any { return c.DeltaDecay }, set: func(c *Config, v any) { c.DeltaDecay = v.(float64) }},
	{name: "max_group_cut", flag: "max-group-cut", kind: kFloat, def: 0.5, check: unitLeftOpen,
		help: "step macs: the largest share of a group's channels one my_pruning candidate may remove; the step is capped so at least half the groups reach it within that share (1: no cap), 0<x<=1",
		get:  func(c *Config) any { return c.MaxGroupCut }, set: func(c *Config, v any) { c.MaxGroupCut = v.(float64) }},
	{name: "shortlist", flag: "shortlist", kind: kInt, def: -1, check: intAtLeast(-1),
		help: "screen every my_pruning candidate first (cut, BatchNorm re-estimated, validated; no fine-tune) and short-term fine-tune only this many best (0: fine-tune every candidate; -1: auto, 4 for a model with more than 16 prunable channel groups, else 0)",
		get:  func(c *Config) any { return c.Shortlist }, set: func(c *Config, v any) { c.Shortlist = v.(int) }},
	{name: "commit_top", flag: "commit-top", kind: kInt, def: -1, check: intAtLeast(-1),
		help: "commit the best N my_pruning candidates of an iteration together (each on its own group, while the joint cut is above the target), short-term fine-tuned once more as one model: about 1/N the iterations, one more candidate run each (1: the winner alone, NetAdapt; -1: auto, 3 for a model with more than 16 prunable channel groups, else 1)",
		get:  func(c *Config) any { return c.CommitTop }, set: func(c *Config, v any) { c.CommitTop = v.(int) }},
	{name: "common_batches", flag: "common-batches", kind: kBool, def: true,
		help: "every my_pruning candidate of an iteration fine-tunes on the same training batches in the same order (common random numbers)",
		get:  func(c *Config) any { return c.CommonBatches }, set: func(c *Config, v any) { c.CommonBatches = v.(bool) }},
	{name: "bn_batches", flag: "bn-batches", kind: kInt, def: 0, check: intAtLeast(0),
		help: "re-estimate BatchNorm statistics on this many training batches after each my_pruning cut, before the short-term fine-tune and validation (0: off; default 0, or 5 with shortlist)",
		get:  func(c *Config) any { return c.BNBatches }, set: func(c *Config, v any) { c.BNBatches = v.(int) }},
	{name: "tie_break", flag: "tie-break", kind: kEnum, enum: kinds.Names(kinds.TieBreaks), def: string(kinds.TieBreakNone),
		help: "among my_pruning candidates within one standard error of the best: none, most MACs removed (macs) or lowest training loss (loss)",
		get:  func(c *Config) any { return string(c.TieBreak) }, set: func(c *Config, v any) { c.TieBreak = kinds.TieBreak(v.(string)) }},
	{name: "target", flag: "target", kind: kEnum, enum: kinds.Names(kinds.Targets), def: string(kinds.TargetMACs),
		help: "the resource my_pruning removes P of: macs, or latency measured on latency_device (a per-layer lookup table predicts each candidate's)",
		get:  func(c *Config) any { return string(c.Target) }, set: func(c *Config, v any) { c.Target = kinds.Target(v.(string)) }},
	{name: "latency_device", flag: "latency-device", kind: kDevice, def: "cpu",
		help: "device target: latency measures on: cpu, or cuda:N when libtorch has CUDA",
		get:  func(c *Config) any { return c.LatencyDevice }, set: func(c *Config, v any) { c.LatencyDevice = v.(string) }},
	{name: "latency_threads", flag: "latency-threads", kind: kInt, def: 1, check: intAtLeast(1),
		help: "CPU threads target: latency measures with",
		get:  func(c *Config) any { return c.LatencyThreads }, set: func(c *Config, v any) { c.LatencyThreads = v.(int) }},
	{name: "latency_batch", flag: "latency-batch", kind: kInt, def: 1, check: intAtLeast(1),
		help: "batch size target: latency measures at",
		get:  func(c *Config) any { return c.LatencyBatch }, set: func(c *Config, v any) { c.LatencyBatch = v.(int) }},
	{name: "short_term_steps", flag: "short-steps", kind: kInt, def: 20, check: intAtLeast(0),
		help: "fine-tune steps for each my_pruning candidate",
		get:  func(c *Config) any { return c.ShortTermSteps }, set: func(c *Config, v any) { c.ShortTermSteps = v.(int) }},
	{name: "long_term_epochs", flag: "long-epochs", kind: kInt, def: 1, check: intAtLeast(0),
		help: "fine-tune epochs after my_pruning reaches the target",
		get:  func(c *Config) any { return c.LongTermEpochs }, set: func(c *Config, v any) { c.LongTermEpochs = v.(int) }},
	{name: "rewind", flag: "rewind", kind: kBool, def: false,
		help: "my_pruning's long-term fine-tune starts from the original weights cut to the structure the search found (the channels it kept), not from the search's own weights",
		get:  func(c *Config) any { return c.Rewind }, set: func(c *Config, v any) { c.Rewind = v.(bool) }},
	{name: "taylor_batches", flag: "taylor-batches", kind: kInt, def: 10, check: intAtLeast(1),
		help: "batches whose gradients are summed for TaylorFOWeight scores",
		get:  func(c *Config) any { return c.TaylorBatches }, set: func(c *Config, v any) { c.TaylorBatches = v.(int) }},
	{name: "eval_samples", flag: "eval-samples", kind: kInt, def: 0, check: intAtLeast(0),
		help: "validate my_pruning candidates on a fixed subset of this many val samples (0: all)",
		get:  func(c *Config) any { return c.EvalSamples }, set: func(c *Config, v any) { c.EvalSamples = v.(int) }},

	{name: "epochs", flag: "epochs", kind: kInt, def: 1, check: intAtLeast(0),
		help: "fine-tune epochs",
		get:  func(c *Config) any { return c.Train.Epochs }, set: func(c *Config, v any) { c.Train.Epochs = v.(int) }},
	{name: "lr", flag: "lr", kind: kFloat, def: 0.01, check: positiveFloat,
		help: "learning rate",
		get:  func(c *Config) any { return c.Train.LR }, set: func(c *Config, v any) { c.Train.LR = v.(float64) }},
	{name: "momentum", flag: "momentum", kind: kFloat, def: 0.9, check: halfOpenUnit,
		help: "SGD momentum, 0<=x<1",
		get:  func(c *Config) any { return c.Train.Momentum }, set: func(c *Config, v any) { c.Train.Momentum = v.(float64) }},
	{name: "weight_decay", flag: "weight-decay", kind: kFloat, def: 5e-4, check: nonNegFloat,
		help: "L2 weight decay",
		get:  func(c *Config) any { return c.Train.WeightDecay }, set: func(c *Config, v any) { c.Train.WeightDecay = v.(float64) }},
	{name: "optimizer", flag: "optimizer", kind: kEnum, enum: []string{OptimizerSGD, OptimizerAdam}, def: OptimizerSGD,
		help: "sgd or adam",
		get:  func(c *Config) any { return c.Train.Optimizer }, set: func(c *Config, v any) { c.Train.Optimizer = v.(string) }},
	{name: "batch_size", flag: "batch-size", kind: kInt, def: 32, check: intAtLeast(1),
		help: "images per batch",
		get:  func(c *Config) any { return c.Train.BatchSize }, set: func(c *Config, v any) { c.Train.BatchSize = v.(int) }},
	{name: "nesterov", flag: "nesterov", kind: kBool, def: false,
		help: "Nesterov momentum (sgd)",
		get:  func(c *Config) any { return c.Train.Nesterov }, set: func(c *Config, v any) { c.Train.Nesterov = v.(bool) }},
	{name: "warmup_steps", flag: "warmup-steps", kind: kInt, def: 0, check: intAtLeast(0),
		help: "linear learning-rate warm-up steps",
		get:  func(c *Config) any { return c.Train.WarmupSteps }, set: func(c *Config, v any) { c.Train.WarmupSteps = v.(int) }},
	{name: "cosine", flag: "cosine", kind: kBool, def: false,
		help: "cosine learning-rate decay after warm-up",
		get:  func(c *Config) any { return c.Train.Cosine }, set: func(c *Config, v any) { c.Train.Cosine = v.(bool) }},
	{name: "distill", flag: "distill", kind: kBool, def: false,
		help: "fine-tunes (my_pruning's short- and long-term, L2Norm's) learn from the original model too: knowledge distillation",
		get:  func(c *Config) any { return c.Distill }, set: func(c *Config, v any) { c.Distill = v.(bool) }},
	{name: "distill_temperature", flag: "distill-temperature", kind: kFloat, def: 4.0, check: positiveFloat,
		help: "softmax temperature T of distill's soft targets, > 0",
		get:  func(c *Config) any { return c.DistillTemperature }, set: func(c *Config, v any) { c.DistillTemperature = v.(float64) }},
	{name: "distill_weight", flag: "distill-weight", kind: kFloat, def: 0.5, check: closedUnit,
		help: "distill's share w of the loss (1-w)·CE + w·T²·KL(teacher ‖ student), 0<=w<=1",
		get:  func(c *Config) any { return c.DistillWeight }, set: func(c *Config, v any) { c.DistillWeight = v.(float64) }},

	{name: "input_shape", flag: "input-shape", kind: kInts, check: inputShape,
		help: "example input N,C,H,W (or N,F; N,C,L; N,C,D,H,W), e.g. [1, 3, 224, 224]",
		get:  func(c *Config) any { return c.InputShape }, set: func(c *Config, v any) { c.InputShape = v.([]int) }},
	{name: "output", flag: "output", kind: kString, check: outputPath,
		help: "which tensor of the model's output is the prediction: a dict key, NamedTuple field or index, dotted for nested outputs (default: the first tensor, a dict's \"out\")",
		get:  func(c *Config) any { return c.Output }, set: func(c *Config, v any) { c.Output = v.(string) }},
	{name: "mean", flag: "mean", kind: kFloats, check: channelValues(false),
		help: "per-channel mean subtracted from images scaled to [0,1]",
		get:  func(c *Config) any { return c.Mean }, set: func(c *Config, v any) { c.Mean = v.([]float64) }},
	{name: "std", flag: "std", kind: kFloats, check: channelValues(true),
		help: "per-channel standard deviation images are divided by",
		get:  func(c *Config) any { return c.Std }, set: func(c *Config, v any) { c.Std = v.([]float64) }},
	{name: "val_fraction", flag: "val-fraction", kind: kFloat, def: 0.1, check: halfOpenUnit,
		help: "share of the dataset held out for validation when it has no split column, 0<=x<1",
		get:  func(c *Config) any { return c.ValFraction }, set: func(c *Config, v any) { c.ValFraction = v.(float64) }},

	{name: "allow_external_paths", flag: "allow-external-paths", kind: kBool, def: false,
		help: "let data.csv rows and ImageFolder symlinks lead outside the dataset directory",
		get:  func(c *Config) any { return c.AllowExternalPaths }, set: func(c *Config, v any) { c.AllowExternalPaths = v.(bool) }},

	{name: "device", flag: "device", kind: kDevice, def: "cpu",
		help: "cpu, cuda or cuda:N",
		get:  func(c *Config) any { return c.Device }, set: func(c *Config, v any) { c.Device = v.(string) }},
	{name: "threads", flag: "threads", kind: kInt, def: 0, check: intAtLeast(0),
		help: "CPU threads for libtorch (0 = auto)",
		get:  func(c *Config) any { return c.Threads }, set: func(c *Config, v any) { c.Threads = v.(int) }},
	{name: "nchw", flag: "nchw", kind: kBool, def: false,
		help: "feed CPU batches NCHW instead of channels-last where the model takes them",
		get:  func(c *Config) any { return c.NCHW }, set: func(c *Config, v any) { c.NCHW = v.(bool) }},
	{name: "amp", flag: "amp", kind: kEnum, enum: []string{AMPOff, AMPBF16, AMPFP16}, def: AMPOff,
		help: "mixed precision for fine-tuning and evaluation on CUDA: off, bf16, or fp16 (with dynamic loss scaling); nothing changes on the CPU",
		get:  func(c *Config) any { return c.AMP }, set: func(c *Config, v any) { c.AMP = v.(string) }},
	{name: "cudnn_benchmark", flag: "cudnn-benchmark", kind: kBool, def: false,
		help: "let cuDNN time its convolution algorithms per input shape and keep the fastest (CUDA only; pays off in a long fine-tune, not in my_pruning, whose every candidate has new shapes)",
		get:  func(c *Config) any { return c.CUDNNBenchmark }, set: func(c *Config, v any) { c.CUDNNBenchmark = v.(bool) }},
	{name: "seed", flag: "seed", kind: kInt, def: 0,
		help: "random seed",
		get:  func(c *Config) any { return int(c.Seed) }, set: func(c *Config, v any) { c.Seed = int64(v.(int)) }},
	{name: "workers", flag: "workers", kind: kInt, def: 0, check: intAtLeast(0),
		help: "image decode workers (0 = one per CPU)",
		get:  func(c *Config) any { return c.Workers }, set: func(c *Config, v any) { c.Workers = v.(int) }},

	{name: "out", flag: "out", kind: kString,
		help: "pruned model path (default: in exp_save/model_name/)",
		get:  func(c *Config) any { return c.Out }, set: func(c *Config, v any) { c.Out = v.(string) }},
	{name: "plan_out", flag: "plan-out", kind: kString,
		help: "write the pruning plan (JSON) here",
		get:  func(c *Config) any { return c.PlanOut }, set: func(c *Config, v any) { c.PlanOut = v.(string) }},
	{name: "resume", flag: "resume", kind: kBool, def: false,
		help: "continue from the checkpoint in exp_save/model_name/",
		get:  func(c *Config) any { return c.Resume }, set: func(c *Config, v any) { c.Resume = v.(bool) }},

	{name: "log_level", flag: "log-level", kind: kEnum, enum: []string{"trace", "debug", "info", "warn", "error"}, def: "info",
		help: "trace, debug, info, warn or error",
		get:  func(c *Config) any { return c.LogLevel }, set: func(c *Config, v any) { c.LogLevel = v.(string) }},
	{name: "log_format", flag: "log-format", kind: kEnum, enum: []string{LogFormatText, LogFormatJSON}, def: LogFormatText,
		help: "text or json",
		get:  func(c *Config) any { return c.LogFormat }, set: func(c *Config, v any) { c.LogFormat = v.(string) }},
}

// sections are the algorithms' own mappings in the file, by canonical name.
var sections = kinds.Names(kinds.Algorithms)

var (
	byName = map[string]*spec{} // canonical name → spec
	byEnv  = map[string]*spec{} // environment variable → spec
)

func init() {
	for _, k := range keys {
		byName[k.name] = k
		for _, e := range k.envNames() {
			byEnv[e] = k
		}
	}
}

// KeyInfo describes a configuration key for help texts and documentation.
type KeyInfo struct {
	Name    string   // YAML key as the old tool wrote it; "path.x" inside path:
	Aliases []string // other accepted YAML spellings
	Flag    string   // flag name without the leading dashes
	Env     []string // environment variables
	Type    string   // "float", "int", "bool", "string", "strings", ...
	Choices []string // accepted values of a choice
	Default string   // formatted default, "" when unset or derived
	Help    string
}

// Keys lists every configuration key in display order.
func Keys() []KeyInfo {
	out := make([]KeyInfo, 0, len(keys))
	for _, k := range keys {
		ki := KeyInfo{Name: k.name, Aliases: slices.Clone(k.aliases), Flag: k.flag, Env: k.envNames(),
			Type: k.kind.String(), Choices: slices.Clone(k.enum), Help: k.help}
		if k.def != nil {
			ki.Default = formatValue(k.def)
		}
		out = append(out, ki)
	}
	return out
}

// cloneValue copies slices so a Config never shares backing arrays with the
// defaults table or with another Config.
func cloneValue(v any) any {
	switch t := v.(type) {
	case []string:
		return slices.Clone(t)
	case []int:
		return slices.Clone(t)
	case []float64:
		return slices.Clone(t)
	case []Slot:
		return slices.Clone(t)
	}
	return v
}

// isFinite guards floats from flags and env, where strconv accepts "NaN" and "Inf".
func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
