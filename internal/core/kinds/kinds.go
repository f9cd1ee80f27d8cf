// Package kinds is gopruner's one vocabulary of named choices: the pruning
// algorithm, the channel criterion, and my_pruning's candidate selection,
// step, step schedule and tie-breaking rules. The config validates the
// user's spelling against these, the search (netadapt) and the criteria act
// on them, and every other package names them through this package, so each
// value is written down once.
//
// Each kind is a typed string whose value is the spelling of Pruning.yaml and
// of the JSON outputs. The zero value "" means "not given"; Or replaces it with
// the kind's default. Parse matches exactly; the config matches
// case-insensitively against Names.
//
// The package is pure Go and imports nothing of gopruner's.
package kinds

import (
	"fmt"
	"strings"
)

// Algorithm is the pruning algorithm (the `algorithm` key and the names of
// Pruning.yaml's sections).
type Algorithm string

const (
	// AlgorithmMyPruning is NetAdapt-style iterative pruning.
	AlgorithmMyPruning Algorithm = "my_pruning"
	// AlgorithmL2Norm is one-shot pruning by filter norm.
	AlgorithmL2Norm Algorithm = "L2Norm"
)

// Algorithms lists the algorithms, the default first.
var Algorithms = []Algorithm{AlgorithmMyPruning, AlgorithmL2Norm}

// Criterion ranks the channels of a group (the `criterion` key, spelt
// `algoritm` in the old my_pruning section).
type Criterion string

const (
	// TaylorFOWeight is NNI's first-order Taylor weight criterion.
	TaylorFOWeight Criterion = "TaylorFOWeight"
	// L2Norm is the L2 norm of each filter.
	L2Norm Criterion = "L2Norm"
)

// Criteria lists the criteria, the default first.
var Criteria = []Criterion{TaylorFOWeight, L2Norm}

// Select is my_pruning's rule for the winning candidate (the `select` key).
type Select string

const (
	// SelectAcc keeps the candidate with the highest accuracy; ties go to
	// fewer MACs, then to the lower group id.
	SelectAcc Select = "acc"
	// SelectAccPerMAC keeps the candidate with the best accuracy change per
	// MAC removed, (acc − acc_prev)/(macs_prev − macs_cand), i.e. the
	// smallest drop per MAC; ties as for SelectAcc.
	SelectAccPerMAC Select = "acc_per_mac"
	// SelectLoss keeps the candidate with the lowest validation loss (mean
	// cross-entropy): near saturation, accuracy on a small validation set
	// counts a handful of errors, while the loss sees every sample's
	// confidence. Ties as for SelectAcc.
	SelectLoss Select = "loss"
)

// Selects lists the selection rules, the default first.
var Selects = []Select{SelectAcc, SelectAccPerMAC, SelectLoss}

// Step is my_pruning's step size rule (the `step` key).
type Step string

const (
	// StepChannels cuts delta_crop of a group's current channels, or fewer
	// when fewer reach the MACs target.
	StepChannels Step = "channels"
	// StepMACs makes every candidate remove about the same MACs,
	// delta_crop·MACs₀ per iteration (NetAdapt's resource reduction
	// schedule), capped at what is left to the target.
	StepMACs Step = "macs"
)

// Steps lists the step rules, the default first.
var Steps = []Step{StepChannels, StepMACs}

// Schedule is how my_pruning's step (delta_crop) changes over the
// iterations (the `delta_schedule` key).
type Schedule string

const (
	// ScheduleConstant uses delta_crop in every iteration.
	ScheduleConstant Schedule = "constant"
	// ScheduleDecay multiplies it by delta_decay after every iteration,
	// delta_crop·delta_decay^(i−1) in iteration i, as NetAdapt's resource
	// reduction schedule does: large cuts while the model has slack, small
	// ones near the target where each removed MAC costs more accuracy.
	ScheduleDecay Schedule = "decay"
)

// Schedules lists the schedules, the default first.
var Schedules = []Schedule{ScheduleConstant, ScheduleDecay}

// TieBreak is how my_pruning chooses among candidates whose scores lie
// within one standard error of the best (the `tie_break` key).
type TieBreak string

const (
	// TieBreakNone keeps the best score, however close the others are.
	TieBreakNone TieBreak = "none"
	// TieBreakMACs keeps, among the candidates within noise of the best,
	// the one that removes the most MACs.
	TieBreakMACs TieBreak = "macs"
	// TieBreakLoss keeps, among the candidates within noise of the best,
	// the one with the lowest short-term training loss.
	TieBreakLoss TieBreak = "loss"
)

// TieBreaks lists the tie-breaking rules, the default first.
var TieBreaks = []TieBreak{TieBreakNone, TieBreakMACs, TieBreakLoss}

// Target is the resource my_pruning removes a share P of.
type Target string

const (
	// TargetMACs: P is the share of MACs (ptflops' count) to remove.
	TargetMACs Target = "macs"
	// TargetLatency: P is the share of measured latency to remove, as a
	// per-layer latency lookup table predicts it (NetAdapt's resource).
	TargetLatency Target = "latency"
)

// Targets lists the targets, the default first.
var Targets = []Target{TargetMACs, TargetLatency}

// kind is what the types share.
type kind interface {
	~string
}

// Names are the spellings of vs, in order.
func Names[T kind](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Parse returns the value of vs spelt exactly s; what names the kind in the
// error ("criterion", "select", ...).
func Parse[T kind](what, s string, vs []T) (T, error) {
	for _, v := range vs {
		if string(v) == s {
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown %s %q (want %s)", what, s, strings.Join(Names(vs), " or "))
}

// Or is v, or def when v is "" (not given).
func Or[T kind](v, def T) T {
	if v == "" {
		return def
	}
	return v
}

// Valid reports whether v is one of vs.
func Valid[T kind](v T, vs []T) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func (a Algorithm) String() string { return string(a) }
func (c Criterion) String() string { return string(c) }
func (s Select) String() string    { return string(s) }
func (s Step) String() string      { return string(s) }
func (s Schedule) String() string  { return string(s) }
func (t TieBreak) String() string  { return string(t) }
func (t Target) String() string    { return string(t) }
