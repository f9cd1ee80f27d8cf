//go:build cgo

package torch

/*
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gptorch.h"

// Whether the environment tunes malloc itself; then gopruner leaves it be.
static int gp_user_tuned_malloc(void) {
  static const char *vars[] = {"GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                               "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i]) != NULL) return 1;
  return 0;
}

// glibc fixes its arena limit when it first gives a thread other than the
// main one an arena; a later mallopt(M_ARENA_MAX) does not lower it. The
// Go runtime starts its threads before any package init: with the mallopt
// in the package's init, every gopruner process ran on 5 arenas
// (malloc_info). This constructor runs when the program is loaded, before
// the runtime starts. gp_arenas_limited says whether it did.
static int gp_arenas_limited;

__attribute__((constructor)) static void gp_limit_arenas(void) {
  if (gp_user_tuned_malloc()) return;
  gpt_err err = gpt_tune_malloc(1, 0, 0);
  gp_arenas_limited = err == NULL;
  gpt_free(err);
}

static int gp_arenas_were_limited(void) { return gp_arenas_limited; }

// The number of malloc arenas in use (malloc_info's <heap> entries), or -1.
static int gp_malloc_arenas(void) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  if (f == NULL) return -1;
  int ok = malloc_info(0, f) == 0;
  fclose(f);
  int count = 0;
  for (char *p = buf; ok && p != NULL && (p = strstr(p, "<heap nr=")) != NULL; p++) count++;
  free(buf);
  return ok ? count : -1;
}
*/
import "C"

import (
	"fmt"
	"sync"

	"github.com/gopruner/gopruner/internal/core/device"
)

// Settings are the process-wide policies of the bridge. The shim holds no
// policy of its own: it reads no environment variable and has no load-time
// constructor; these settings are all it does.
type Settings struct {
	// ChannelsLast lets the train, eval and Taylor steps probe each model
	// once and feed it CPU image batches as channels-last (NHWC) when its
	// forward accepts them: oneDNN's convolutions work in that layout
	// (measured for a train step: resnet18 12%, mobilenet_v2 37%, the demo
	// CNN 20% faster). Off: always NCHW. On an x86 CPU where oneDNN runs
	// its AVX2 kernels (AVX2 without AVX-512) CPU batches stay NCHW all the
	// same, and only CUDA gets channels-last: see isa.go.
	ChannelsLast bool
	// MallocTuning gives glibc thresholds that keep step-sized buffers
	// mapped, beside the one arena that the package's load-time
	// constructor already set (see gp_limit_arenas). Go calls into
	// libtorch from its own OS threads, and glibc gives each a secondary
	// arena: a chain of 64 MB heaps of which the newest is unmapped as
	// soon as it is free again. A training step whose buffers cross a heap
	// boundary then maps, faults in and unmaps that heap every step
	// (measured on the demo CNN: 1.1M page faults an epoch and a third of
	// the CPU time in the kernel); these thresholds bring that to 0.06M.
	// The one arena, which is the constructor's and so not undone by
	// turning this off, matters for memory: a tensor freed by one thread is
	// reused by the next allocation on any other, where with an arena per
	// thread a one-shot cut (load on one thread, surgery on another) held
	// the old and the new weights at once. Off changes nothing already
	// applied.
	MallocTuning bool
	// Output picks the prediction among the tensors forward returns, for
	// forward, train, eval and Taylor steps: a path of dict keys,
	// NamedTuple field names and tuple/list indices joined by dots ("out",
	// "aux.0"). Empty: the first tensor depth-first, a dict's "out" entry
	// before its others (gopruner's `output` key).
	Output string
	// AMP is the autocast precision of train and eval steps of modules on
	// CUDA: "" or "off", "bf16", or "fp16" (with dynamic loss scaling).
	// The CPU's steps never autocast.
	AMP string
	// CUDNNBenchmark lets cuDNN time its algorithms for each new input
	// shape and keep the fastest (torch.backends.cudnn.benchmark). Off by
	// default, as in PyTorch: a my_pruning search gives every candidate
	// new conv shapes, and timing them all made one iteration of the demo
	// search 7× slower on an H200 (9.5–10.6 s against 1.25–1.39 s).
	CUDNNBenchmark bool
}

const (
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

func userTunedMalloc() bool { return C.gp_user_tuned_malloc() != 0 }

// arenasLimited says whether glibc was limited to one malloc arena when the
// program loaded (not when the environment tunes malloc itself).
func arenasLimited() bool { return C.gp_arenas_were_limited() != 0 }

// mallocArenas is the number of malloc arenas in use, or -1 when glibc
// cannot say.
func mallocArenas() int { return int(C.gp_malloc_arenas()) }

var (
	settingsMu sync.Mutex
	current    Settings
)

// Configure applies s. The package's init applies DefaultSettings, so a
// program calls it only to change them (from its configuration, say).
func Configure(s Settings) error {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	isa, x86 := device.HostX86ISA()
	if err := errFrom("set_channels_last", C.gpt_set_channels_last(C.int(channelsLastMode(s.ChannelsLast, isa, x86)))); err != nil {
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
	amp := map[string]int{"": 0, "off": 0, "bf16": 1, "fp16": 2}
	a, ok := amp[s.AMP]
	if !ok {
		return fmt.Errorf("amp %q: want off, bf16 or fp16", s.AMP)
	}
	if err := errFrom("set_cuda_options", C.gpt_set_cuda_options(C.int(a), cbool(s.CUDNNBenchmark))); err != nil {
		return err
	}
	current.AMP, current.CUDNNBenchmark = s.AMP, s.CUDNNBenchmark
	if s.MallocTuning && !current.MallocTuning {
		// The arena limit is the constructor's (too late here); the
		// thresholds take effect whenever they are set.
		if err := errFrom("tune_malloc", C.gpt_tune_malloc(0, mallocMmapThreshold, mallocTrimThreshold)); err != nil {
			return err
		}
		current.MallocTuning = true
	}
	return nil
}

// ReleaseFreed hands the C heap's free pages back to the system: what
// closed modules and tensors left, which the malloc tuning otherwise keeps
// resident for the next allocations (Settings.MallocTuning). For the end
// of a run, once its models are closed.
func ReleaseFreed() {
	_ = errFrom("release_freed", C.gpt_release_freed())
}

// CurrentSettings are the settings in force.
func CurrentSettings() Settings {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	return current
}

// init applies the defaults before main runs (the arena limit, which must
// come earlier still, is gp_limit_arenas's). A refused malloc tuning (a
// sanitizer's allocator, a libc without mallopt's knobs) is no error: it
// only costs speed.
func init() {
	if err := Configure(DefaultSettings()); err != nil {
		s := DefaultSettings()
		s.MallocTuning = false
		_ = Configure(s)
	}
}
