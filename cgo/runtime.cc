// runtime.cc: settings, versions, devices, threads and seeds.
#include <dlfcn.h>
#include <malloc.h>
#include <torch/cuda.h>

#include <climits>
#include <cstdlib>

#include "internal.h"

namespace gpt {

std::atomic<int> channels_last{1};

namespace {

// OpenBLAS's thread-count calls, looked up once: libtorch links the BLAS
// that the system's alternatives chose, so the shim cannot link them.
struct OpenBLAS {
  void (*set)(int) = nullptr;
  int (*get)() = nullptr;
};

const OpenBLAS &openblas() {
  static const OpenBLAS o = [] {
    OpenBLAS r;
    r.set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    r.get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (r.set == nullptr || r.get == nullptr) r = OpenBLAS{};
    return r;
  }();
  return o;
}

}  // namespace

int blas_threads() {
  const OpenBLAS &o = openblas();
  return o.get != nullptr ? o.get() : -1;
}

void set_blas_threads(int n) {
  const OpenBLAS &o = openblas();
  if (n > 0 && o.get != nullptr && o.get() != n) o.set(n);
}

namespace {
std::atomic<int> process_count{0};  // 0: libtorch's default
}  // namespace

int process_threads() {
  // Every module call asks; libtorch's default reads the environment each
  // time, so it is read once.
  static const int dflt = at::intraop_default_num_threads();
  int n = process_count.load();
  return n > 0 ? n : dflt;
}

void apply_threads(int n) {
  if (n <= 0) return;
  if (at::get_num_threads() != n) at::set_num_threads(n);
  set_blas_threads(n);
}

void release_freed() { malloc_trim(0); }

}  // namespace gpt

extern "C" {

void gpt_free(void *p) { std::free(p); }

gpt_err gpt_set_channels_last(int on) {
  if (on < 0 || on > 2) return gpt::dup("set_channels_last: want 0, 1 or 2");
  gpt::channels_last = on;
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
  gpt::process_count.store(n);
  at::set_num_threads(n);
  gpt::set_blas_threads(n);
  GPT_CATCH
}

gpt_err gpt_get_blas_threads(int *out) {
  GPT_TRY
  *out = gpt::blas_threads();
  GPT_CATCH
}

gpt_err gpt_get_num_threads(int *out) {
  GPT_TRY
  *out = at::get_num_threads();
  GPT_CATCH
}

gpt_err gpt_release_freed(void) {
  gpt::release_freed();
  return nullptr;
}

gpt_err gpt_heap_in_use(int64_t *out) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  *out = static_cast<int64_t>(mi.uordblks + mi.hblkhd);
#else
  *out = -1;
#endif
  return nullptr;
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
