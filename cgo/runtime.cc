// runtime.cc: settings, versions, devices, threads and seeds.
#include <malloc.h>
#include <torch/cuda.h>

#include <climits>
#include <cstdlib>

#include "internal.h"

namespace gpt {

std::atomic<bool> channels_last{true};

}  // namespace gpt

extern "C" {

void gpt_free(void *p) { std::free(p); }

gpt_err gpt_set_channels_last(int on) {
  gpt::channels_last = on != 0;
  return nullptr;
}

gpt_err gpt_tune_malloc(int arena_max, int64_t mmap_threshold, int64_t trim_threshold) {
  GPT_TRY
  if (mmap_threshold > INT_MAX || trim_threshold > INT_MAX)
    return gpt::dup("tune_malloc: threshold exceeds INT_MAX");
  // mallopt returns 0 when it refuses (a sanitizer's allocator, a libc
  // without these knobs); then nothing is tuned and the caller is told.
  if (arena_max > 0 && mallopt(M_ARENA_MAX, arena_max) == 0)
    return gpt::dup("tune_malloc: mallopt(M_ARENA_MAX) refused");
  if (mmap_threshold > 0 && mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 0)
    return gpt::dup("tune_malloc: mallopt(M_MMAP_THRESHOLD) refused");
  if (trim_threshold > 0 && mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 0)
    return gpt::dup("tune_malloc: mallopt(M_TRIM_THRESHOLD) refused");
  GPT_CATCH
}

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
