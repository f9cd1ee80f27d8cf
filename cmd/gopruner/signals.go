//go:build cgo

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Signals end the process (issue 17). SIGINT and SIGTERM cancel the
// command's context, and a run that watches it stops at its next step,
// keeping its finished iterations, and exits 130 (SIGINT) or 143 (SIGTERM).
// A goroutine blocked in I/O (open(2) of a named pipe, a read on a stalled
// network mount) never looks at the context, so a watchdog exits the
// process by itself signalGrace after the first signal, or at once on a
// second one. Checkpoints are written to a temporary file and renamed, and
// a rename is atomic, so exiting at any moment leaves the last checkpoint
// valid.

// signalGrace is how long a cancelled command may take to return.
const signalGrace = 3 * time.Second

// signalWatch turns SIGINT and SIGTERM into a cancelled context and, if
// the command does not return in time, into an exit.
type signalWatch struct {
	ch     chan os.Signal
	cancel context.CancelFunc
	done   chan struct{}
	exit   func(code int) // os.Exit; a test may replace it

	mu       sync.Mutex
	got      os.Signal // the first signal, nil until one came
	finished bool      // the command returned: the caller reports and exits
}

// watchSignals starts watching; stop ends it.
func watchSignals(parent context.Context, grace time.Duration) (context.Context, *signalWatch) {
	ctx, cancel := context.WithCancel(parent)
	w := &signalWatch{ch: make(chan os.Signal, 2), cancel: cancel, done: make(chan struct{}), exit: os.Exit}
	signal.Notify(w.ch, os.Interrupt, syscall.SIGTERM)
	go w.loop(grace)
	return ctx, w
}

func (w *signalWatch) loop(grace time.Duration) {
	var timeout <-chan time.Time
	for {
		select {
		case <-w.done:
			return
		case s := <-w.ch:
			w.mu.Lock()
			first := w.got == nil
			if first {
				w.got = s
			}
			w.mu.Unlock()
			w.cancel()
			if !first {
				w.force("a second signal")
				return
			}
			timeout = time.After(grace)
		case <-timeout:
			w.force(fmt.Sprintf("still busy %s after it (blocked in I/O?)", grace))
			return
		}
	}
}

// force exits unless the command has already returned, in which case the
// caller is about to report and exit itself.
func (w *signalWatch) force(why string) {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return
	}
	// The lock stays held: the caller's finish blocks until the exit.
	fmt.Fprintf(os.Stderr, "gopruner: %s, %s: exiting now; finished iterations are kept (use --resume)\n", signalWord(w.got), why)
	w.exit(signalCode(w.got))
	w.mu.Unlock() // only reached when exit is not os.Exit
}

// finish records that the command returned, so that the watchdog no longer
// exits on its behalf, and reports the signal that interrupted it, if any.
func (w *signalWatch) finish() os.Signal {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finished = true
	return w.got
}

// stop releases the signals and ends the watchdog.
func (w *signalWatch) stop() {
	signal.Stop(w.ch)
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.cancel()
}

// signalCode is the shell's exit status for a process ended by sig:
// 128 + its number (130 for SIGINT, 143 for SIGTERM).
func signalCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// signalWord names the signal for the one-line message.
func signalWord(sig os.Signal) string {
	if sig == syscall.SIGTERM {
		return "terminated (SIGTERM)"
	}
	return "interrupted (SIGINT)"
}
