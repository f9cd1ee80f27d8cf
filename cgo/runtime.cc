// runtime.cc: versions, devices, threads, seeds and grad mode.
#include <malloc.h>
#include <torch/cuda.h>

#include <cstdlib>

#include "internal.h"

namespace {

// Go calls into libtorch from its own OS threads, and glibc gives each of
// those threads a secondary arena: a chain of 64 MB heaps of which the newest
// is unmapped as soon as it is free again. A training step whose buffers
// cross a heap boundary then maps, faults in and unmaps that heap every step
// (measured on the demo CNN: 1.1M page faults an epoch and a third of the
// CPU time in the kernel; a plain PyTorch loop hits the same, intermittently,
// in its OpenMP threads). One arena, with thresholds that keep step-sized
// buffers mapped, brings that to 0.06M, run after run. It runs at
// load time because an arena limit only binds threads that have not
// allocated yet, and Go starts threads before any package initialiser. A
// user who tunes malloc through the environment keeps their own settings.
constexpr int kMmapThreshold = 32 << 20;   // glibc's own dynamic ceiling
constexpr int kTrimThreshold = 256 << 20;  // free memory the heap may keep

bool user_tuned_malloc() {
  for (const char *v : {"GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                        "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

__attribute__((constructor)) void tune_malloc() {
  if (user_tuned_malloc()) return;
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

}  // namespace

extern "C" {

void gpt_free(void *p) { std::free(p); }

gpt_err gpt_version(char **out) {
  GPT_TRY
  std::string v = std::to_string(TORCH_VERSION_MAJOR) + "." +
                  std::to_string(TORCH_VERSION_MINOR) + "." +
                  std::to_string(TORCH_VERSION_PATCH);
  *out = gpt::dup(v);
  GPT_CATCH
}

gpt_err gpt_cuda_available(int *out) {
  GPT_TRY
  *out = torch::cuda::is_available() ? 1 : 0;
  GPT_CATCH
}

gpt_err gpt_cuda_device_count(int *out) {
  GPT_TRY
  *out = static_cast<int>(torch::cuda::device_count());
  GPT_CATCH
}

gpt_err gpt_cudnn_available(int *out) {
  GPT_TRY
  *out = torch::cuda::cudnn_is_available() ? 1 : 0;
  GPT_CATCH
}

gpt_err gpt_set_num_threads(int n) {
  GPT_TRY
  if (n <= 0) return gpt::dup("thread count must be positive");
  at::set_num_threads(n);
  GPT_CATCH
}

gpt_err gpt_get_num_threads(int *out) {
  GPT_TRY
  *out = at::get_num_threads();
  GPT_CATCH
}

gpt_err gpt_manual_seed(uint64_t seed) {
  GPT_TRY
  torch::manual_seed(seed);
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(seed);
  GPT_CATCH
}

gpt_err gpt_cuda_synchronize(int device) {
  GPT_TRY
  if (!torch::cuda::is_available()) return nullptr;
#if TORCH_VERSION_MAJOR >= 2
  torch::cuda::synchronize(device);
#else
  (void)device;
  // libtorch 1.13 has no torch::cuda::synchronize; an item() on a device
  // tensor waits for the stream just as well for timing purposes.
  auto t = at::zeros({1}, at::TensorOptions().device(c10::Device(c10::kCUDA, device < 0 ? 0 : device)));
  (void)t.sum().item<float>();
#endif
  GPT_CATCH
}

}  // extern "C"
