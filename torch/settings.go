//go:build cgo

package torch

/*
#include "gptorch.h"
*/
import "C"

import (
	"os"
	"sync"
)

// Settings are the process-wide policies of the bridge. The shim holds no
// policy of its own: it reads no environment variable and has no load-time
// constructor; these settings are all it does.
type Settings struct {
	// ChannelsLast lets the train, eval and Taylor steps probe each model
	// once and feed it CPU image batches as channels-last (NHWC) when its
	// forward accepts them: oneDNN's convolutions work in that layout
	// (measured for a train step: resnet18 12%, mobilenet_v2 37%, the demo
	// CNN 20% faster). Off: always NCHW.
	ChannelsLast bool
	// MallocTuning gives glibc one arena and thresholds that keep
	// step-sized buffers mapped. Go calls into libtorch from its own OS
	// threads, and glibc gives each a secondary arena: a chain of 64 MB
	// heaps of which the newest is unmapped as soon as it is free again. A
	// training step whose buffers cross a heap boundary then maps, faults
	// in and unmaps that heap every step (measured on the demo CNN: 1.1M
	// page faults an epoch and a third of the CPU time in the kernel); one
	// arena with these thresholds brings that to 0.06M. Only the first
	// Configure with it on matters (an arena limit binds only threads that
	// have not allocated yet); off changes nothing already applied.
	MallocTuning bool
	// Output picks the prediction among the tensors forward returns, for
	// forward, train, eval and Taylor steps: a path of dict keys,
	// NamedTuple field names and tuple/list indices joined by dots ("out",
	// "aux.0"). Empty: the first tensor depth-first, a dict's "out" entry
	// before its others (gopruner's `output` key).
	Output string
}

const (
	mallocArenaMax      = 1
	mallocMmapThreshold = 32 << 20  // glibc's own dynamic ceiling
	mallocTrimThreshold = 256 << 20 // free memory the heap may keep
)

// DefaultSettings are the settings the package starts with: channels-last
// (a program turns it off from its configuration: gopruner's `nchw` key),
// and malloc tuning unless the environment tunes malloc itself
// (GLIBC_TUNABLES or MALLOC_*_), in which case the user's own settings
// stand.
func DefaultSettings() Settings {
	return Settings{ChannelsLast: true, MallocTuning: !userTunedMalloc()}
}

func userTunedMalloc() bool {
	for _, v := range []string{"GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
		"MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX"} {
		if _, ok := os.LookupEnv(v); ok {
			return true
		}
	}
	return false
}

var (
	settingsMu sync.Mutex
	current    Settings
)

// Configure applies s. The package's init applies DefaultSettings, so a
// program calls it only to change them (from its configuration, say).
func Configure(s Settings) error {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	if err := errFrom("set_channels_last", C.gpt_set_channels_last(cbool(s.ChannelsLast))); err != nil {
		return err
	}
	current.ChannelsLast = s.ChannelsLast
	co := cstr(s.Output)
	err := errFrom("set_output", C.gpt_set_output(co))
	freeC(co)
	if err != nil {
		return err
	}
	current.Output = s.Output
	if s.MallocTuning && !current.MallocTuning {
		if err := errFrom("tune_malloc", C.gpt_tune_malloc(mallocArenaMax, mallocMmapThreshold, mallocTrimThreshold)); err != nil {
			return err
		}
		current.MallocTuning = true
	}
	return nil
}

// CurrentSettings are the settings in force.
func CurrentSettings() Settings {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	return current
}

// init applies the defaults as early as the Go side can: before main runs,
// and so before libtorch starts its threads or any of Go's threads has
// called into C and allocated (the malloc arena limit binds only threads
// that have not allocated yet, which is why the shim used to do this from a
// load-time constructor). A refused malloc tuning (a sanitizer's allocator,
// a libc without mallopt's knobs) is no error: it only costs speed.
func init() {
	if err := Configure(DefaultSettings()); err != nil {
		s := DefaultSettings()
		s.MallocTuning = false
		_ = Configure(s)
	}
}
