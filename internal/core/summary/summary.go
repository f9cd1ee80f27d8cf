// Package summary writes what a pruning run leaves behind for people and
// programs: summary.json (the contract in DESIGN.md) and the human
// exp_save/model_name.txt.
package summary

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gopruner/gopruner/internal/core/atomicfile"
)

// Iteration is one finished search iteration.
type Iteration struct {
	Iteration  int      `json:"iteration"`
	Layers     []string `json:"layers"`
	Group      int      `json:"group"`
	From       int      `json:"channels_before"`
	To         int      `json:"channels_after"`
	MACs       int64    `json:"macs"`
	Accuracy   float64  `json:"accuracy"`
	Candidates int      `json:"candidates"`
	// Worker is "host/slot" of the broker worker that evaluated the winning
	// candidate (omitted on the direct path and for iterations a resumed run
	// inherited).
	Worker string `json:"worker,omitempty"`
	// Seconds is the iteration's wall time, from its start to its
	// checkpoint (0, omitted, for iterations a resumed run inherited).
	Seconds float64 `json:"seconds,omitempty"`
	// TieBroken: the kept candidate is not the best score but one within
	// its standard error that won the tie_break rule.
	TieBroken bool `json:"tie_broken,omitempty"`
	// Budget is the MACs each candidate was asked to remove (step: macs),
	// and Delta the step share under delta_schedule: decay; both omitted
	// otherwise.
	Budget int64   `json:"macs_budget,omitempty"`
	Delta  float64 `json:"delta,omitempty"`
	// Joined are the runners-up committed with the winner under
	// commit_top (omitted otherwise); MACs and Accuracy are then the joint
	// model's.
	Joined []Cut `json:"joined,omitempty"`
	// Results are the iteration's candidates, in group-id order.
	Results []Candidate `json:"candidate_results,omitempty"`
}

// Cut is one more group cut in an iteration (Iteration.Joined).
type Cut struct {
	Group  int      `json:"group"`
	Layers []string `json:"layers"`
	From   int      `json:"channels_before"`
	To     int      `json:"channels_after"`
}

// Candidate is one evaluated candidate of an iteration. The measured
// fields (standard error, training loss, time, slot) are absent for
// iterations a resumed run inherited: only their accuracies were kept.
type Candidate struct {
	Group    int      `json:"group"`
	Layers   []string `json:"layers"`
	From     int      `json:"channels_before"`
	To       int      `json:"channels_after"`
	MACs     int64    `json:"macs"`
	Accuracy float64  `json:"accuracy"`
	// AccuracySE is the binomial standard error of Accuracy,
	// sqrt(p(1−p)/n) over Samples validation samples.
	AccuracySE float64 `json:"accuracy_se,omitempty"`
	Samples    int     `json:"samples,omitempty"`
	TrainLoss  float64 `json:"train_loss,omitempty"` // mean loss of the short-term fine-tune
	// ValLoss is the mean validation loss (cross-entropy) behind Accuracy,
	// ValLossSE its standard error from the spread of the batch means:
	// what select: loss compares.
	ValLoss   float64 `json:"val_loss,omitempty"`
	ValLossSE float64 `json:"val_loss_se,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"` // evaluation wall time on its slot
	Slot      string  `json:"slot,omitempty"`    // the cart slot that ran it
	// Worker is "host:pid/slot" of the broker worker that ran it (omitted
	// on the direct path and for results reused from an earlier run).
	Worker string `json:"worker,omitempty"`
	Kept   bool   `json:"kept,omitempty"` // the iteration's winner
	// Failed says why the candidate failed for good (a worker gave up on it
	// after its deliveries); it took no part in the choice.
	Failed string `json:"failed,omitempty"`
	// ScreenAccuracy is its accuracy in the shortlist's screen (cut,
	// BatchNorm re-estimated, validated, not fine-tuned) and ScreenSeconds
	// the screen's wall time; both omitted without a shortlist.
	// ScreenedOut: it missed the shortlist, was never fine-tuned, and
	// Accuracy is its screen accuracy.
	ScreenAccuracy float64 `json:"screen_accuracy,omitempty"`
	ScreenSeconds  float64 `json:"screen_seconds,omitempty"`
	ScreenedOut    bool    `json:"screened_out,omitempty"`
}

// Timings is how long each phase of the run took, in milliseconds by phase
// name (load, ir_export, analysis, scoring, search, surgery, save, latency,
// report, as the run has them), and the IR's op count: what `make bench`
// reads.
type Timings struct {
	PhaseMs map[string]float64 `json:"phase_ms"`
	TotalMs float64            `json:"total_ms"` // from the start of the run to summary.json
	IROps   int                `json:"ir_ops"`
	// Candidates is where my_pruning's candidate runs spent their time,
	// summed over every run (the commits' re-runs included).
	Candidates *CandidateTimings `json:"candidates,omitempty"`
}

// CandidateTimings breaks the candidate runs' time down, in milliseconds.
// The two compute parts are forward/backward/optimizer time; everything
// else (load, surgery, the rest of fine-tune and eval) is overhead.
type CandidateTimings struct {
	Runs              int     `json:"runs"`
	Screens           int     `json:"screens,omitempty"` // how many of the runs were shortlist screens (no fine-tune)
	TotalMs           float64 `json:"total_ms"`
	LoadMs            float64 `json:"load_ms"`
	SurgeryMs         float64 `json:"surgery_ms"`
	FineTuneMs        float64 `json:"fine_tune_ms"`
	FineTuneComputeMs float64 `json:"fine_tune_compute_ms"`
	EvalMs            float64 `json:"eval_ms"`
	EvalComputeMs     float64 `json:"eval_compute_ms"`
	BNMs              float64 `json:"bn_ms,omitempty"`         // re-estimating BatchNorm statistics (bn_batches)
	BNComputeMs       float64 `json:"bn_compute_ms,omitempty"` // its forward passes
	// BrokerMs is what the broker added to the candidates: round trips
	// (queue, archive, result) minus the runs' own time; 0 with --broker direct.
	BrokerMs float64 `json:"broker_ms,omitempty"`
	// The iterations' serial parts, outside the candidate runs: scoring
	// the current model by the criterion (every slot waits for it) and
	// committing the winner (serialising it; a re-run when it was not held).
	ScoringMs float64 `json:"scoring_ms"`
	CommitMs  float64 `json:"commit_ms"`
}

// Latency is a forward-latency measurement before and after.
type Latency struct {
	Device   string  `json:"device"`
	Batch    int64   `json:"batch"`
	BeforeMs float64 `json:"before_ms"`
	AfterMs  float64 `json:"after_ms"`
}

// LatencyTarget is my_pruning's `target: latency`: the lookup table's
// predicted latency of the unpruned and the final model, both models
// measured side by side after the search, and the prediction's error.
type LatencyTarget struct {
	Device            string  `json:"device"`
	Threads           int     `json:"threads"`
	Batch             int64   `json:"batch"`
	PredictedBeforeMs float64 `json:"predicted_before_ms"`
	PredictedAfterMs  float64 `json:"predicted_after_ms"`
	MeasuredBeforeMs  float64 `json:"measured_before_ms"` // 0 when not measured
	MeasuredAfterMs   float64 `json:"measured_after_ms"`
	// ErrorPct is (measured − predicted)/predicted of the final model, in
	// percent; absent when it was not measured.
	ErrorPct *float64 `json:"error_pct,omitempty"`
	// SpeedupErrorPct is the measured speed-up (after/before, measured
	// side by side) against the predicted one, in percent: insensitive to
	// the machine being busier at the end than when the table was made.
	SpeedupErrorPct *float64 `json:"speedup_error_pct,omitempty"`
	ResidueMs       float64  `json:"residue_ms"` // the unpruned latency the table does not hold
	Layers          int      `json:"layers"`     // tabled layers
	Points          int      `json:"points"`     // their grid points
	Timed           int      `json:"timed"`      // distinct standalone ops timed (0 when cached)
	Untabled        []string `json:"untabled,omitempty"`
	Cached          bool     `json:"cached"` // the table came from latency_lut.json
	// Anchors counts the models measured during the search, side by side
	// with the original, to anchor the table's prediction on.
	Anchors int `json:"anchors"`
	// AnchorsSkipped counts the anchors left unused because the original
	// timed more than 20% off its time when the table was measured: the
	// machine ran at another speed, at which speed-ups differ.
	AnchorsSkipped int `json:"anchors_skipped"`
	// StateRetries counts the measurements (anchors and the final check)
	// taken again, up to three times each, because the original timed out
	// of the table's state; an anchor is skipped, and the final check
	// reported out of state, only when every try was.
	StateRetries int `json:"state_retries"`
	// Tables are the lookup tables of the machine states the run met, the
	// first measured (or cached) before the search, another for each state
	// two anchors in a row found the original in with no table of it (at
	// most three). FinalTable indexes the one whose state the final check
	// ran in, whose predictions predicted_*_ms then are; -1 when none was
	// (they are the search's last table's). target_macs and the
	// iterations' macs stay in the first table's nanoseconds.
	Tables     []StateTable `json:"tables"`
	FinalTable int          `json:"final_table"`
	// TablesDiscarded counts the tables measured during the search but not
	// kept: the machine changed speed while they were measured.
	TablesDiscarded int     `json:"tables_discarded"`
	TableSeconds    float64 `json:"table_seconds"` // measuring the tables (0 when cached and none was added)
}

// StateTable is one machine state's lookup table.
type StateTable struct {
	OriginalMs float64 `json:"original_ms"` // its unpruned prediction: the original's time in its state
	// PredictedAfterMs is its prediction of the final model, made before
	// that model was measured.
	PredictedAfterMs float64 `json:"predicted_after_ms"`
	Anchors          int     `json:"anchors"` // measurements that anchored it
}

// Layer is one layer's output channels before and after.
type Layer struct {
	Name   string `json:"name"`
	Before int    `json:"before"`
	After  int    `json:"after"`
}

// Summary is summary.json.
type Summary struct {
	Algorithm    string      `json:"algorithm"`
	Criterion    string      `json:"criterion,omitempty"`
	Model        string      `json:"model"`
	MACsBefore   int64       `json:"macs_before"`
	MACsAfter    int64       `json:"macs_after"`
	ParamsBefore int64       `json:"params_before"`
	ParamsAfter  int64       `json:"params_after"`
	AccBefore    *float64    `json:"acc_before"`
	AccAfter     *float64    `json:"acc_after"`
	Iterations   []Iteration `json:"iterations"`
	ModelOut     string      `json:"model_out"`
	PlanOut      string      `json:"plan_out,omitempty"`
	Report       string      `json:"report,omitempty"`
	Target       int64       `json:"target_macs"`
	Reached      bool        `json:"target_reached"`
	Latency      []Latency   `json:"latency,omitempty"`
	// Resource is my_pruning's target resource: "macs" or "latency" (then
	// target_macs and the iterations' macs fields hold predicted latency
	// in nanoseconds, and LatencyTarget the prediction against the
	// measurement).
	Resource      string         `json:"target,omitempty"`
	LatencyTarget *LatencyTarget `json:"latency_target,omitempty"`
	Layers        []Layer        `json:"layers,omitempty"`
	Started       time.Time      `json:"started"`
	Seconds       float64        `json:"seconds"`
	Timings       *Timings       `json:"timings,omitempty"`

	// TestAccBefore and TestAccAfter are on the data set's test split, which
	// the search never selects by; absent without one.
	TestAccBefore *float64 `json:"test_acc_before,omitempty"`
	TestAccAfter  *float64 `json:"test_acc_after,omitempty"`

	// Distill is the knowledge distillation from the original model that
	// the fine-tunes used; absent when none did.
	Distill *Distill `json:"distill,omitempty"`

	// Rewound is true when my_pruning's long-term fine-tune started from
	// the original weights cut to the searched structure (config key
	// rewind) rather than from the search's own weights.
	Rewound bool `json:"rewound,omitempty"`
}

// Distill is the distillation loss's settings (config keys
// distill_temperature and distill_weight).
type Distill struct {
	Temperature float64 `json:"temperature"`
	Weight      float64 `json:"weight"`
}

// WriteJSON writes summary.json atomically.
func (s *Summary) WriteJSON(path string) error {
	if s.Iterations == nil {
		s.Iterations = []Iteration{}
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}

// WriteText writes the human summary atomically.
func (s *Summary) WriteText(path string) error {
	var b strings.Builder
	s.Text(&b)
	return atomicfile.WriteFile(path, []byte(b.String()), 0o644)
}

// Text renders the before/after table and the iterations.
func (s *Summary) Text(w io.Writer) {
	fmt.Fprintf(w, "gopruner %s on %s\n\n", s.Algorithm, s.Model)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tbefore\tafter\tratio")
	fmt.Fprintf(tw, "MACs\t%s\t%s\t%.3f\n", Human(s.MACsBefore), Human(s.MACsAfter), ratio(s.MACsAfter, s.MACsBefore))
	fmt.Fprintf(tw, "params\t%s\t%s\t%.3f\n", Human(s.ParamsBefore), Human(s.ParamsAfter), ratio(s.ParamsAfter, s.ParamsBefore))
	if s.AccBefore != nil && s.AccAfter != nil {
		fmt.Fprintf(tw, "accuracy\t%.4f\t%.4f\t%+.4f\n", *s.AccBefore, *s.AccAfter, *s.AccAfter-*s.AccBefore)
	}
	if s.TestAccBefore != nil && s.TestAccAfter != nil {
		fmt.Fprintf(tw, "test accuracy\t%.4f\t%.4f\t%+.4f\n", *s.TestAccBefore, *s.TestAccAfter, *s.TestAccAfter-*s.TestAccBefore)
	}
	for _, l := range s.Latency {
		fmt.Fprintf(tw, "latency (%s, batch %d)\t%.2f ms\t%.2f ms\t%.2fx faster\n", l.Device, l.Batch, l.BeforeMs, l.AfterMs, l.BeforeMs/max(l.AfterMs, 1e-9))
	}
	if l := s.LatencyTarget; l != nil {
		fmt.Fprintf(tw, "predicted latency (%s, %d threads, batch %d)\t%.3f ms\t%.3f ms\t%.3f\n", l.Device, l.Threads, l.Batch,
			l.PredictedBeforeMs, l.PredictedAfterMs, l.PredictedAfterMs/max(l.PredictedBeforeMs, 1e-12))
		if l.ErrorPct != nil {
			fmt.Fprintf(tw, "measured latency\t%.3f ms\t%.3f ms\t%.3f (%+.1f%% vs predicted", l.MeasuredBeforeMs, l.MeasuredAfterMs,
				l.MeasuredAfterMs/max(l.MeasuredBeforeMs, 1e-12), *l.ErrorPct)
			if l.SpeedupErrorPct != nil {
				fmt.Fprintf(tw, "; ratio %+.1f%%", *l.SpeedupErrorPct)
			}
			fmt.Fprintln(tw, ")")
		}
		if len(l.Tables) > 1 {
			fmt.Fprintf(tw, "latency tables (machine speeds)\t%d\t\t", len(l.Tables))
			for i, t := range l.Tables {
				if i > 0 {
					fmt.Fprint(tw, "; ")
				}
				fmt.Fprintf(tw, "%.3f → %.3f ms (%d anchors)", t.OriginalMs, t.PredictedAfterMs, t.Anchors)
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	lat := s.Resource == "latency"
	cost, costName := Human, "MACs"
	if lat {
		// The search's cost is predicted latency in ns.
		cost, costName = func(ns int64) string { return fmt.Sprintf("%.3f ms", float64(ns)/1e6) }, "pred. latency"
	}
	if !s.Reached {
		fmt.Fprintf(w, "\ntarget of %s %s NOT reached\n", cost(s.Target), costName)
	}
	if len(s.Iterations) > 0 {
		fmt.Fprintf(w, "\niterations:\n")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "iter\tlayers\tchannels\t%s\taccuracy\n", costName)
		for _, it := range s.Iterations {
			fmt.Fprintf(tw, "%d\t%s\t%d -> %d\t%s\t%.4f\n", it.Iteration, strings.Join(it.Layers, ","), it.From, it.To, cost(it.MACs), it.Accuracy)
		}
		tw.Flush()
	}
	if s.Distill != nil {
		fmt.Fprintf(w, "\nfine-tuned with distillation from the original model (temperature %g, weight %g)\n", s.Distill.Temperature, s.Distill.Weight)
	}
	if s.Rewound {
		fmt.Fprintf(w, "\nlong-term fine-tune from the original weights at the searched structure (rewind)\n")
	}
	fmt.Fprintf(w, "\npruned model: %s\n", s.ModelOut)
	if s.Report != "" {
		fmt.Fprintf(w, "report:       %s\n", s.Report)
	}
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Human prints 1234567 as 1.23M.
func Human(n int64) string {
	f := float64(n)
	switch {
	case f >= 1e9:
		return fmt.Sprintf("%.2fG", f/1e9)
	case f >= 1e6:
		return fmt.Sprintf("%.2fM", f/1e6)
	case f >= 1e3:
		return fmt.Sprintf("%.2fK", f/1e3)
	}
	return fmt.Sprintf("%d", n)
}
