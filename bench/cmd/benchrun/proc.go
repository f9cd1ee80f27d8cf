package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one finished child process: its whole-process wall time, peak
// RSS, exit status, stdout, and stderr lines with the time each arrived.
type proc struct {
	Args     []string  `json:"args"`
	WallS    float64   `json:"wall_s"`
	MaxRSSKB int64     `json:"max_rss_kb"`
	RSSFrom  string    `json:"rss_from"` // "time -v" or "rusage"
	Exit     int       `json:"exit"`
	Stdout   []byte    `json:"-"`
	Lines    []logLine `json:"-"`
}

// logLine is one stderr line and when it arrived, relative to the start.
type logLine struct {
	At   time.Duration
	Text string
}

// runner starts child processes, measured with /usr/bin/time -v when it
// exists, else with the rusage Go's os/exec reports.
type runner struct {
	timeV   string // path of GNU time, "" when absent
	tmp     string // where time -v writes its report
	verbose bool   // echo each command
	env     []string
	root    string // stripped from the arguments kept in results.json
}

func newRunner(tmp string, verbose bool) *runner {
	r := &runner{tmp: tmp, verbose: verbose, env: os.Environ()}
	if p, err := exec.LookPath("/usr/bin/time"); err == nil {
		// GNU time understands -v; BusyBox's does too, others may not.
		if exec.Command(p, "-v", "-o", os.DevNull, "true").Run() == nil {
			r.timeV = p
		}
	}
	return r
}

// setenv sets a variable for every child process.
func (r *runner) setenv(k, v string) {
	out := r.env[:0:0]
	for _, kv := range r.env {
		if !strings.HasPrefix(kv, k+"=") {
			out = append(out, kv)
		}
	}
	r.env = append(out, k+"="+v)
}

func (r *runner) getenv(k string) string {
	for _, kv := range r.env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}

func (r *runner) method() string {
	if r.timeV != "" {
		return "/usr/bin/time -v"
	}
	return "rusage (os/exec)"
}

// run runs args[0] with args[1:], killing its process group after timeout.
// A non-zero exit is not an error here: callers look at p.Exit and the
// stderr lines (for the one-line "gopruner: ..." message).
func (r *runner) run(ctx context.Context, timeout time.Duration, args ...string) (*proc, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := args
	var report string
	if r.timeV != "" {
		f, err := os.CreateTemp(r.tmp, "time-*.txt")
		if err != nil {
			return nil, err
		}
		report = f.Name()
		f.Close()
		defer os.Remove(report)
		argv = append([]string{r.timeV, "-v", "-o", report}, args...)
	}
	if r.verbose {
		fmt.Fprintf(os.Stderr, "  $ %s\n", shellJoin(args))
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = r.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &proc{Args: make([]string, len(args))}
	for i, a := range args {
		p.Args[i] = a
		if r.root != "" {
			p.Args[i] = strings.ReplaceAll(a, r.root+string(filepath.Separator), "")
		}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", args[0], err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			p.Lines = append(p.Lines, logLine{At: time.Since(start), Text: sc.Text()})
		}
		io.Copy(io.Discard, errPipe)
	}()
	<-done
	werr := cmd.Wait()
	p.WallS = time.Since(start).Seconds()
	p.Stdout = stdout.Bytes()
	if ctx.Err() != nil {
		return p, fmt.Errorf("%s: killed after %s", shellJoin(args), timeout)
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return p, fmt.Errorf("%s: %w", shellJoin(args), werr)
	}
	if cmd.ProcessState != nil {
		p.Exit = cmd.ProcessState.ExitCode()
	}
	if report != "" {
		if b, err := os.ReadFile(report); err == nil {
			tv := parseTimeV(string(b))
			p.MaxRSSKB, p.RSSFrom = tv.maxRSSKB, "time -v"
			if tv.exit >= 0 {
				p.Exit = tv.exit // time's own exit mirrors the child's; this is explicit
			}
		}
	} else if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.MaxRSSKB, p.RSSFrom = ru.Maxrss, "rusage" // kilobytes on Linux
		}
	}
	return p, nil
}

// timeV is what benchrun reads from a GNU time -v report.
type timeV struct {
	maxRSSKB int64
	exit     int // -1 when absent
}

func parseTimeV(s string) timeV {
	t := timeV{exit: -1}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Maximum resident set size (kbytes)":
			t.maxRSSKB, _ = strconv.ParseInt(v, 10, 64)
		case "Exit status":
			if n, err := strconv.Atoi(v); err == nil {
				t.exit = n
			}
		}
	}
	return t
}

// ok returns nil for exit 0, else an error with the child's last stderr line.
// runJSON runs args to a clean exit and decodes the JSON it printed on
// stdout into v.
func (r *runner) runJSON(ctx context.Context, timeout time.Duration, v any, args ...string) (*proc, error) {
	p, err := r.run(ctx, timeout, args...)
	if err != nil {
		return nil, err
	}
	if err := p.ok(); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(p.Stdout, v); err != nil {
		return nil, fmt.Errorf("%s's output: %w (stdout %q)", filepath.Base(args[0]), err, p.Stdout)
	}
	return p, nil
}

func (p *proc) ok() error {
	if p.Exit == 0 {
		return nil
	}
	return fmt.Errorf("%s exited %d: %s", filepath.Base(p.Args[0]), p.Exit, p.lastErr())
}

// lastErr is the child's one-line error (gopruner prints "gopruner: ...")
// or its last stderr line.
func (p *proc) lastErr() string {
	for i := len(p.Lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(p.Lines[i].Text, "gopruner: ") || strings.HasPrefix(p.Lines[i].Text, "Traceback") {
			return p.Lines[i].Text
		}
	}
	if n := len(p.Lines); n > 0 {
		return p.Lines[n-1].Text
	}
	return "(no output)"
}

func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t\"'$\\;&|<>*?()") {
			b.WriteString(strconv.Quote(a))
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}
