// Package netadapt is the pure-Go core of gopruner's my_pruning algorithm,
// after NetAdapt (Yang et al., arXiv 1804.03230): while the model's MACs are
// above the target, make one candidate per prunable channel group that cuts a
// step of that group's channels, short-term fine-tune and validate every
// candidate (concurrently, over the device slots of `cart`), keep the best,
// checkpoint; then optionally round every group to a multiple of alf
// (resize_alf) and long-term fine-tune.
//
// The step may shrink over the iterations (Options.Schedule), and "the
// best" may be noise-aware: every Result carries its validation sample
// count, so the binomial standard error of each accuracy is known, and
// Options.TieBreak chooses among the candidates within one standard error
// of the best score by resource removed or by training loss.
//
// The package decides keep counts, schedules work and records history. All
// tensor work (cloning the model, choosing channels by the criterion,
// fine-tuning, validating) sits behind Evaluator and Finisher, so the package
// builds and tests without libtorch (CGO_ENABLED=0).
package netadapt

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/gopruner/gopruner/internal/core/kinds"
)

// Reasons the search ended (State.Reason).
const (
	ReasonTargetReached = "target reached"
	ReasonNothingLeft   = "nothing left to prune"
)

// Group is one prunable channel group as the search sees it. Groups the graph
// analysis froze are simply not passed to Run.
type Group struct {
	ID       int      `json:"id"`
	Layers   []string `json:"layers"`   // module/tensor names, for reports and errors
	Channels int      `json:"channels"` // channel count of the unpruned model
	// Block, above 1, makes the group lose whole blocks of Block channels
	// (a grouped conv's channels per group): its counts step by the least
	// common multiple of alf and Block.
	Block int `json:"block,omitempty"`
}

// Candidate is one proposed cut: group Group goes from From to To channels,
// every other group stays as it is. Keep is the complete keep-count vector
// (group id → kept channels) after the cut, and MACs the cost model's MACs
// under it.
type Candidate struct {
	Iteration int         `json:"iteration"`
	Group     int         `json:"group"`
	Layers    []string    `json:"layers"`
	From      int         `json:"from"`
	To        int         `json:"to"`
	MACs      int64       `json:"macs"`
	Keep      map[int]int `json:"keep"`
}

// Result is what evaluating one candidate gives.
type Result struct {
	Accuracy float64 // validated accuracy, a fraction in [0,1]
	// Samples is how many validation samples Accuracy counts (0: unknown,
	// which makes StdErr 0 and every tie-break a plain comparison).
	Samples int
	// TrainLoss is the mean training loss of the short-term fine-tune (0
	// without one).
	TrainLoss float64
	// ValLoss is the mean validation loss behind Accuracy, and ValLossSE
	// its standard error (0: unknown). kinds.SelectLoss chooses on them.
	ValLoss, ValLossSE float64
	// Worker names where the candidate ran when that is not simply the
	// slot (a broker worker, "host:pid/slot"); "" otherwise. For the
	// progress display only: it is kept out of the history.
	Worker string
}

// StdErr is the binomial standard error of the accuracy,
// sqrt(p(1−p)/n): the noise of a validation on Samples samples.
func (r Result) StdErr() float64 {
	if r.Samples <= 0 {
		return 0
	}
	p := min(max(r.Accuracy, 0), 1)
	return math.Sqrt(p * (1 - p) / float64(r.Samples))
}

// Outcome is one evaluated candidate as the hooks see it. Slot and Duration
// depend on scheduling, which is why they stay out of the (deterministic)
// history; Samples and TrainLoss stay out too, so that the history of a
// run is what it was before they were measured.
type Outcome struct {
	Candidate Candidate
	Slot      int    // index into Options.Slots
	SlotName  string // Options.Slots[Slot]
	Accuracy  float64
	Samples   int     // validation samples behind Accuracy (Result.Samples)
	TrainLoss float64 // short-term training loss (Result.TrainLoss)
	ValLoss   float64 // Result.ValLoss
	ValLossSE float64 // Result.ValLossSE
	Worker    string  // Result.Worker
	// Screen marks the outcome of a screen (Screener.Screen: cut and
	// validated without the short-term fine-tune) under Options.Shortlist;
	// a shortlisted candidate has a second, full outcome after it.
	Screen   bool
	Duration time.Duration
	Err      error // nil on success; the context's error for a candidate cut short
}

// StdErr is the standard error of the outcome's accuracy (Result.StdErr).
func (o Outcome) StdErr() float64 {
	return Result{Accuracy: o.Accuracy, Samples: o.Samples}.StdErr()
}

// Evaluator does the tensor work of one search. Run calls MACs and Commit
// from its own goroutine only; Evaluate runs concurrently for different
// slots but never twice at once for the same slot index, so an
// implementation can keep one model copy per slot without locking.
type Evaluator interface {
	// MACs is the cost model: the MACs of the model under a keep vector
	// (group id → kept channels; groups not in the map are unpruned). It must
	// be pure and non-decreasing in every group's count (the ptflops model
	// is), because StepMACs binary-searches it.
	MACs(keep map[int]int) int64
	// Evaluate clones the current model onto slot, prunes group c.Group to
	// c.To channels by the criterion, short-term fine-tunes, validates and
	// returns the accuracy, with the sample count and training loss the
	// noise-aware selection uses. It should stop promptly when ctx is
	// cancelled.
	Evaluate(ctx context.Context, slot int, c Candidate) (Result, error)
	// Commit makes the winning candidate the current model. The core calls
	// it once per finished iteration, before the checkpoint is saved.
	Commit(ctx context.Context, c Candidate) error
}

// Screener is the optional part of an Evaluator that Options.Shortlist
// needs. Screen cuts candidate c from the current model on slot and
// validates it as Evaluate would, but without the short-term fine-tune
// (after the BatchNorm re-estimation, when the evaluator does one): a
// cheap estimate of how candidates will rank after it, as in EagleEye (Li
// et al., arXiv 2007.02491), where accuracy after re-estimated BatchNorm
// statistics predicted the fine-tuned ranking. Like Evaluate it runs
// concurrently for different slots, never twice at once for one slot.
type Screener interface {
	Screen(ctx context.Context, slot int, c Candidate) (Result, error)
}

// JointCommitter is the optional part of an Evaluator that
// Options.CommitTop needs. CommitJoint makes the current model the one with
// every cut of cs applied at once (cs[0] is the iteration's winner, the
// others the next best, each on another group, all cut from the current
// model as their candidates were), short-term fine-tuned and validated as
// Evaluate would a candidate, and returns that validation. Run calls it
// from its own goroutine only, instead of Commit.
type JointCommitter interface {
	CommitJoint(ctx context.Context, cs []Candidate) (Result, error)
}

// Anchorer is the optional part of an Evaluator whose cost model a
// measurement corrects (target: latency): a lookup table predicts changes
// of latency better than its sum predicts a whole model's. After every
// commit, and before a resumed search goes on, Run calls Anchor with the
// current keep counts; when it reports that the cost model moved, Run
// reads the current cost again through MACs, and the target check, the
// next budget and the checkpoint use that value. MACs must stay pure and
// non-decreasing between two Anchor calls. The iteration record keeps the
// winner's cost as predicted before the measurement.
type Anchorer interface {
	Anchor(ctx context.Context, keep map[int]int) (moved bool, err error)
}

// Finisher is the optional part of an Evaluator that Run needs when
// Options.ResizeAlf or Options.FineTune is set.
type Finisher interface {
	// Resize prunes the current model to the keep vector chosen by
	// ResizeAlf and returns its validated accuracy. Not called when
	// resize_alf changes nothing.
	Resize(ctx context.Context, keep map[int]int) (accuracy float64, err error)
	// FineTune long-term fine-tunes the current model and returns its
	// validated accuracy.
	FineTune(ctx context.Context) (accuracy float64, err error)
}

// Checkpointer persists the search state. Save gets a deep copy it may keep.
type Checkpointer interface {
	Save(ctx context.Context, s State) error
}

// CheckpointFunc adapts a function to Checkpointer.
type CheckpointFunc func(ctx context.Context, s State) error

// Save calls f.
func (f CheckpointFunc) Save(ctx context.Context, s State) error { return f(ctx, s) }

// State is everything needed to resume a search, and the run's record. It
// is what the caller writes as the checkpoint, hence the JSON tags.
type State struct {
	Iteration int               `json:"iteration"`   // finished iterations
	Keep      map[int]int       `json:"keep"`        // group id → kept channels now
	MACs0     int64             `json:"macs_before"` // MACs of the unpruned model
	Target    int64             `json:"macs_target"` // floor((1−P)·MACs₀)
	MACs      int64             `json:"macs"`        // MACs now
	Accuracy0 float64           `json:"acc_before"`  // Options.BaseAccuracy of the first run
	Accuracy  float64           `json:"acc"`         // accuracy of the current model
	History   []IterationRecord `json:"iterations"`
	Done      bool              `json:"done"` // the search loop has ended
	Reason    string            `json:"reason,omitempty"`
	Resized   bool              `json:"resized"`    // the resize_alf pass has run
	FineTuned bool              `json:"fine_tuned"` // long-term fine-tuning has run
}

// IterationRecord is one finished iteration: the winner and every candidate,
// in group-id order. It holds what summary.json's iterations[] reports.
type IterationRecord struct {
	Iteration      int      `json:"iteration"`
	Group          int      `json:"group"` // the winner
	Layers         []string `json:"layers"`
	From           int      `json:"from"`
	To             int      `json:"to"`
	MACsBefore     int64    `json:"macs_before"`
	MACs           int64    `json:"macs"`
	AccuracyBefore float64  `json:"acc_before"`
	Accuracy       float64  `json:"acc"`
	Budget         int64    `json:"macs_budget,omitempty"` // StepMACs: MACs each candidate was asked to remove
	Delta          float64  `json:"delta,omitempty"`       // the step share under delta_schedule decay (0: constant, delta_crop)
	TieBroken      bool     `json:"tie_broken,omitempty"`  // the winner is within one standard error of the best score and won the tie-break
	// Joined are the runners-up committed with the winner under
	// Options.CommitTop; MACs and Accuracy are then the joint model's.
	Joined     []Cut             `json:"joined,omitempty"`
	Candidates []CandidateRecord `json:"candidates"`
}

// Cut is one group's cut in an iteration record.
type Cut struct {
	Group  int      `json:"group"`
	Layers []string `json:"layers"`
	From   int      `json:"from"`
	To     int      `json:"to"`
}

// CandidateRecord is one evaluated candidate in the history.
type CandidateRecord struct {
	Group    int      `json:"group"`
	Layers   []string `json:"layers"`
	From     int      `json:"from"`
	To       int      `json:"to"`
	MACs     int64    `json:"macs"`
	Accuracy float64  `json:"acc"`
	// Failed says why the candidate failed for good (its Evaluate error
	// wrapped ErrCandidateFailed); it took no part in the choice.
	Failed string `json:"failed,omitempty"`
	// ScreenAccuracy is the candidate's accuracy in the screen of
	// Options.Shortlist (cut, BatchNorm re-estimated, not fine-tuned);
	// omitted when no screen ran. ScreenedOut: it did not make the
	// shortlist, was never fine-tuned, took no part in the choice, and
	// Accuracy holds its screen accuracy.
	ScreenAccuracy float64 `json:"screen_acc,omitempty"`
	ScreenedOut    bool    `json:"screened_out,omitempty"`
}

// ErrCandidateFailed, wrapped in an Evaluate error, marks a candidate that
// failed for good (a worker gave up on it after its deliveries: out of
// memory, a corrupt file): the iteration records it as failed and chooses
// among the others. Any other error ends the search.
var ErrCandidateFailed = errors.New("the candidate failed for good")

// Options configure Run.
type Options struct {
	P         float64      // fraction of MACs to remove, in (0,1)
	DeltaCrop float64      // step size, in (0,1); see Step
	Alf       int          // kept counts are multiples of Alf, never below it; >= 1
	Select    kinds.Select // kinds.SelectAcc (default when empty), kinds.SelectAccPerMAC or kinds.SelectLoss
	Step      kinds.Step   // kinds.StepChannels (default when empty) or kinds.StepMACs
	// Schedule is kinds.ScheduleConstant (default when empty) or
	// kinds.ScheduleDecay: iteration i then steps by
	// DeltaCrop·DeltaDecay^(i−1), DeltaDecay in (0,1].
	Schedule   kinds.Schedule
	DeltaDecay float64
	// MaxGroupCut, under kinds.StepMACs, is the largest share of a group's
	// current channels one candidate may remove, in (0,1]; 0 means 1 (no
	// limit). Below 1 the iteration's budget is also capped at the upper
	// median of what the groups can remove within that share, and a group
	// that cannot remove the budget within it is not a candidate this
	// iteration. Without it, a budget larger than most groups hold sends
	// every such candidate to alf in one step (ResNet-20's inner convs,
	// 64 → 4), and the search only compares collapses.
	MaxGroupCut float64
	// TieBreak is kinds.TieBreakNone (default when empty): the best score
	// wins. kinds.TieBreakMACs or kinds.TieBreakLoss: among the candidates
	// whose score is within one standard error of the best (Result.StdErr,
	// per removed MAC for acc_per_mac), the one removing the most MACs, or
	// with the lowest short-term training loss, wins.
	TieBreak kinds.TieBreak
	// Slots names the device slots of cart ("cpu", "cuda:0", ...); one
	// worker per entry. Evaluate receives the index.
	Slots []string
	// Exclude holds the ids of groups never pruned (iskl, already mapped
	// from layer names to groups by the caller). An unknown id is an error.
	Exclude map[int]bool
	// BaseAccuracy is the validated accuracy of the unpruned model; it is
	// acc_prev of the first iteration for SelectAccPerMAC. Ignored on resume.
	BaseAccuracy float64
	// Shortlist, above 0, screens every candidate of an iteration first
	// (Screener: cut and validated without the short-term fine-tune),
	// ranks them by the selection rule on the screens, and short-term
	// fine-tunes and evaluates only the Shortlist best, from which the
	// winner is chosen as usual. 0 (default) evaluates every candidate
	// fully; so does an iteration with no more candidates than Shortlist.
	Shortlist int
	// CommitTop, above 1, commits up to that many of an iteration's best
	// candidates at once (JointCommitter): the winner, then the runners-up
	// in the selection rule's order, each on its own group, as long as the
	// joint cut stays at or above the target. The joint model is
	// short-term fine-tuned and validated once more, which costs one
	// candidate run an iteration, and the search then needs about 1/CommitTop
	// as many iterations. 0 or 1 commits the winner alone (NetAdapt).
	CommitTop int
	ResizeAlf bool // after the loop, round every prunable group down to a multiple of Alf (needs Finisher)
	FineTune  bool // then long-term fine-tune (needs Finisher)

	// Hooks for progress and reports. They are called one at a time (never
	// concurrently), some from worker goroutines, and should return quickly.
	OnIterationStart func(iteration int, budget int64, cands []Candidate)
	OnCandidateStart func(slot int, c Candidate)
	OnCandidate      func(o Outcome)
	OnIteration      func(rec IterationRecord) // after the iteration's checkpoint was saved
}
