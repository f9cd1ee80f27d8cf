//go:build cgo

// Command gopruner structurally prunes TorchScript CNNs: it removes whole
// channels from Conv2d, BatchNorm2d and Linear layers, fine-tunes, and saves
// a smaller TorchScript model that PyTorch loads as before.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/gopruner/gopruner/internal/core/fail"
	"github.com/gopruner/gopruner/internal/torchengine/model"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the CLI and returns the exit code. Errors are printed as one
// line, "gopruner: ...", and never as a panic trace.
func run(args []string) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "gopruner: internal error: %v\n", r)
			code = 1
		}
	}()
	if stop, err := cpuProfile(os.Getenv("GOPRUNER_CPUPROFILE")); err != nil {
		fmt.Fprintf(os.Stderr, "gopruner: GOPRUNER_CPUPROFILE: %v\n", err)
		return 2
	} else {
		defer stop()
	}
	// SIGINT and SIGTERM cancel ctx; see signals.go for the forced exit.
	ctx, sigs := watchSignals(context.Background(), signalGrace)
	defer sigs.stop()
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	sig := sigs.finish()
	for _, f := range atExit {
		f()
	}
	if err == nil {
		return 0
	}
	if sig != nil {
		fmt.Fprintf(os.Stderr, "gopruner: %s; finished iterations are kept (use --resume)\n", signalWord(sig))
		return signalCode(sig)
	}
	var se *model.ShapeError
	if errors.As(err, &se) && se.Origin == "" {
		se.Origin = inputShapeOrigin
	}
	fmt.Fprintln(os.Stderr, "gopruner: "+oneLine(err.Error()))
	if cobraUsage(err) {
		return 2
	}
	return fail.Code(err)
}

// cobraUsage recognises the usage errors cobra raises itself (unknown
// commands, wrong argument counts), which carry no type to test.
func cobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "gopruner",
		Short: "Structured channel pruning of TorchScript CNNs",
		Long: `gopruner removes whole channels from the Conv2d, BatchNorm2d and Linear
layers of a TorchScript model (scripted or traced), fine-tunes it, and saves a
smaller, faster TorchScript model that PyTorch loads as before.

Plain "gopruner" is "gopruner prune"; a ./Pruning.yaml is used when present.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "Pruning.yaml to read (default ./Pruning.yaml when present)")
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().String("log-format", "text", "log format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fail.Usage(err) })
	root.AddCommand(newVersionCmd())
	for _, add := range extraCommands {
		add(root)
	}
	return root
}

// atExit runs after the command, before the exit code is decided (the
// leakcheck build reports live handles there).
var atExit []func()

// extraCommands lets each command file register itself, so main.go does not
// grow with every subcommand.
var extraCommands []func(root *cobra.Command)

// cpuProfile starts Go's CPU profiler writing to path (a developer's knob,
// GOPRUNER_CPUPROFILE, for `go tool pprof`; the shim's time shows as cgo
// calls, perf profiles the C++ side) and returns what stops it. "" profiles
// nothing.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
