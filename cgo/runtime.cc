// runtime.cc: versions, devices, threads, seeds and grad mode.
#include <torch/cuda.h>

#include "internal.h"

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

gpt_err gpt_no_grad_enter(void **guard) {
  GPT_TRY
  *guard = new at::NoGradGuard();
  GPT_CATCH
}

gpt_err gpt_no_grad_exit(void *guard) {
  GPT_TRY
  delete static_cast<at::NoGradGuard *>(guard);
  GPT_CATCH
}

}  // extern "C"
