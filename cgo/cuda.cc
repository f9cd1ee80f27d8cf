// cuda.cc: what a step on a CUDA device adds to one on the CPU: the
// module's own stream, autocast, host-to-device uploads, cuDNN's
// benchmark mode. Only generic c10 interfaces are used, so this file
// compiles against a CPU-only libtorch and does nothing there.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include "internal.h"

namespace gpt {

std::atomic<int> amp{0};

namespace {

// libtorch 2.4 made autocast's state per device type; 1.13 has the CUDA
// one under other names.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
void set_autocast(bool on) { at::autocast::set_autocast_enabled(at::kCUDA, on); }
at::ScalarType autocast_dtype() { return at::autocast::get_autocast_dtype(at::kCUDA); }
void set_autocast_dtype(at::ScalarType t) { at::autocast::set_autocast_dtype(at::kCUDA, t); }
#else
bool autocast_enabled() { return at::autocast::is_enabled(); }
void set_autocast(bool on) { at::autocast::set_enabled(on); }
at::ScalarType autocast_dtype() { return at::autocast::get_autocast_gpu_dtype(); }
void set_autocast_dtype(at::ScalarType t) { at::autocast::set_autocast_gpu_dtype(t); }
#endif

// fence makes `waiter` wait for the work queued on `done` so far (an event,
// not a host synchronisation).
void fence(const c10::Stream &done, const c10::Stream &waiter) {
  if (done == waiter) return;
  c10::Event ev(c10::DeviceType::CUDA);
  ev.record(done);
  ev.block(waiter);
}

}  // namespace

CudaScope::CudaScope(gpt_module_s *m, bool autocast) {
  if (m == nullptr || !m->device.is_cuda()) return;
  c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
  c10::Device dev = m->device.has_index() ? m->device : impl.getDevice();
  if (!m->stream) m->stream = impl.getStreamFromGlobalPool(dev, /*isHighPriority=*/false);
  outer_ = impl.getStream(dev);
  inner_ = *m->stream;
  fence(*outer_, *inner_);
  guard_.emplace(*inner_);
  int a = amp.load();
  if (autocast && (a == 1 || a == 2)) {
    prev_enabled_ = autocast_enabled();
    prev_dtype_ = autocast_dtype();
    set_autocast(true);
    set_autocast_dtype(a == 1 ? at::kBFloat16 : at::kHalf);
    at::autocast::increment_nesting();
    amp_ = a;
  }
}

CudaScope::~CudaScope() {
  try {
    if (amp_ != 0) {
      // As torch.autocast's exit: the cast weights cached for this step
      // go when the outermost scope ends.
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      set_autocast(prev_enabled_);
      set_autocast_dtype(prev_dtype_);
    }
    if (inner_) {
      guard_.reset();
      fence(*inner_, *outer_);
    }
  } catch (...) {
    // A destructor must not throw; the step's own error, if any, is the
    // one the caller gets.
  }
}

at::Tensor on_device(const at::Tensor &t, const c10::Device &dev) {
  if (t.device().type() == dev.type() && (!dev.has_index() || t.device().index() == dev.index()))
    return t;
  bool async = dev.is_cuda() && t.device().is_cpu() && t.is_pinned();
  return t.to(dev, /*non_blocking=*/async);
}

}  // namespace gpt

extern "C" {

gpt_err gpt_set_cuda_options(int amp, int cudnn_benchmark) {
  if (amp < 0 || amp > 2) return gpt::dup("set_cuda_options: amp must be 0 (off), 1 (bf16) or 2 (fp16)");
  GPT_TRY
  gpt::amp = amp;
  at::globalContext().setBenchmarkCuDNN(cudnn_benchmark != 0);
  GPT_CATCH
}

}  // extern "C"
