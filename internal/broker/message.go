package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Task is one candidate to run, as queued on TaskSubject(Run, ID).
type Task struct {
	Protocol  int    `json:"protocol"`
	Version   string `json:"gopruner_version"` // the coordinator's build; a worker of another one refuses
	Run       string `json:"run"`
	ID        string `json:"id"` // content address of the request: equal requests, equal ids
	Iteration int    `json:"iteration"`
	Group     int    `json:"group"`
	// Archive is the digest of the model archive in ArchiveBucket.
	Archive string `json:"archive"`
	// Dataset names the data set a remote worker opens under its data root,
	// the options to open it with, and the manifest digest its copy must have.
	Dataset DatasetRef `json:"dataset"`
	// Request is the candidate itself (pipeline.CandidateRequest).
	Request json.RawMessage `json:"request"`
	// Bridge is how the coordinator runs models; a worker that runs them
	// otherwise refuses the task. Absent from an older coordinator's tasks.
	Bridge *Bridge `json:"bridge,omitempty"`
}

// Bridge is the part of a process's libtorch settings that changes what a
// candidate's fine-tune and validation compute: the batch layout (nchw),
// which output tensor is the prediction (output) and CUDA mixed precision
// (amp).
type Bridge struct {
	NCHW   bool   `json:"nchw"`
	Output string `json:"output"`
	AMP    string `json:"amp"`
}

// Mismatch says how a task's bridge differs from this process's b ("" when
// it does not, or when the task names none).
func (b Bridge) Mismatch(task *Bridge) string {
	if task == nil || *task == b {
		return ""
	}
	var d []string
	if task.NCHW != b.NCHW {
		d = append(d, fmt.Sprintf("nchw %v (here %v)", task.NCHW, b.NCHW))
	}
	if task.Output != b.Output {
		d = append(d, fmt.Sprintf("output %q (here %q)", task.Output, b.Output))
	}
	if task.AMP != b.AMP {
		d = append(d, fmt.Sprintf("amp %s (here %s)", task.AMP, b.AMP))
	}
	return "the coordinator runs models with " + strings.Join(d, ", ") + ": start the worker with the coordinator's settings"
}

// DatasetRef is the data set of a task.
type DatasetRef struct {
	Name     string          `json:"name"`     // one path element under the worker's --data-root
	Manifest string          `json:"manifest"` // Manifest of the coordinator's copy
	Options  json.RawMessage `json:"options"`  // data.Options
	// EvalSamples, above 0, validates on that seeded subset of val (the
	// coordinator's eval_samples).
	EvalSamples int   `json:"eval_samples,omitempty"`
	EvalSeed    int64 `json:"eval_seed,omitempty"`
}

// Result is the outcome of a task, kept on ResultSubject(Run, ID).
type Result struct {
	Protocol  int    `json:"protocol"`
	Run       string `json:"run"`
	ID        string `json:"id"`
	Iteration int    `json:"iteration"`
	Group     int    `json:"group"`
	// Worker is "host/slot" of the worker that ran (or refused) the task.
	Worker     string  `json:"worker"`
	Deliveries int     `json:"deliveries"`
	Seconds    float64 `json:"seconds"`
	// Error is empty on success; otherwise why the candidate failed for good.
	Error string `json:"error,omitempty"`
	// Refused marks an Error that is the worker's refusal (another
	// protocol or build, a malformed task, a data set that differs): the
	// setup is wrong and no worker of it would run the task, so the search
	// stops. Any other Error fails only that candidate.
	Refused bool            `json:"refused,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"` // pipeline.CandidateResult

	// Reused is set by Dispatcher.Do when the result was stored before this
	// coordinator queued the task (a resumed run's).
	Reused bool `json:"-"`
}

// token is what run ids and task ids may be: one subject token.
var token = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken says whether s may be a run id or task id.
func ValidToken(s string) bool { return token.MatchString(s) }

// ErrRefused marks a task a worker will not run whatever happens (another
// protocol or build, a malformed message).
var ErrRefused = errors.New("refused")

// DecodeTask parses and checks a task message. The error says what is wrong
// and wraps ErrRefused.
func DecodeTask(b []byte, version string) (*Task, error) {
	var t Task
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%w: malformed task message: %v", ErrRefused, err)
	}
	if t.Protocol != ProtocolVersion {
		return &t, fmt.Errorf("%w: task protocol %d, this worker speaks %d", ErrRefused, t.Protocol, ProtocolVersion)
	}
	if version != "" && t.Version != "" && t.Version != version {
		return &t, fmt.Errorf("%w: task from gopruner %s, this worker is %s", ErrRefused, t.Version, version)
	}
	if !token.MatchString(t.Run) || !token.MatchString(t.ID) {
		return &t, fmt.Errorf("%w: task run %q / id %q are not subject tokens", ErrRefused, t.Run, t.ID)
	}
	if !token.MatchString(t.Archive) {
		return &t, fmt.Errorf("%w: task archive digest %q is malformed", ErrRefused, t.Archive)
	}
	if len(t.Request) == 0 {
		return &t, fmt.Errorf("%w: task has no request", ErrRefused)
	}
	return &t, nil
}

// CheckDatasetName refuses a data set name that is not one plain path
// element, so a message can never point a worker outside its data root.
func CheckDatasetName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w: data set name %q is not one path element", ErrRefused, name)
	}
	return nil
}

// subjectID is the run and task id of a task subject, for answering a
// message too broken to decode.
func subjectID(subject string) (run, id string, ok bool) {
	rest, ok := strings.CutPrefix(subject, TaskPrefix)
	if !ok {
		return "", "", false
	}
	run, id, ok = strings.Cut(rest, ".")
	return run, id, ok && token.MatchString(run) && token.MatchString(id)
}
