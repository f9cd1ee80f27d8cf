// rng.cc: each module's own random stream.
//
// libtorch draws dropout masks (and every random fill that names no
// generator) from one default generator per device, shared by the whole
// process. Two cart slots training at once took turns on it, so the masks a
// candidate got depended on the other slot's timing. A module with a
// stream of its own (gpt_module_set_rng) has its calls run under RngScope
// (gpt::Entry), which includes libtorch's CustomRNGKeyId dispatch key on
// the thread: the random ops below are registered under that key and hand
// the module's generator to the op where the caller named none. Every other
// op falls through the key to its usual kernel.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <tuple>

#include "internal.h"

namespace gpt {
namespace {

thread_local const at::Generator *current = nullptr;

using OptGen = c10::optional<at::Generator>;

// The generator an op on t draws from: the caller's, else the scope's when
// it is for t's device type (a CPU stream leaves meta and CUDA tensors to
// their defaults), else the device's default.
OptGen pick(const at::Tensor &t, const OptGen &g) {
  if (g.has_value()) return g;
  if (current != nullptr && current->device().type() == t.device().type()) return *current;
  return c10::nullopt;
}

// Each kernel calls the op again with the generator picked and the key
// excluded, which reaches the tensor's own kernel.
using Off = c10::impl::ExcludeDispatchKeyGuard;
constexpr auto kKey = c10::DispatchKey::CustomRNGKeyId;

at::Tensor &bernoulli_float(at::Tensor &self, double p, OptGen g) {
  Off off(kKey);
  return self.bernoulli_(p, pick(self, g));
}

at::Tensor &bernoulli_tensor(at::Tensor &self, const at::Tensor &p, OptGen g) {
  Off off(kKey);
  return self.bernoulli_(p, pick(self, g));
}

at::Tensor bernoulli(const at::Tensor &self, OptGen g) {
  Off off(kKey);
  return at::bernoulli(self, pick(self, g));
}

at::Tensor bernoulli_p(const at::Tensor &self, double p, OptGen g) {
  Off off(kKey);
  return at::bernoulli(self, p, pick(self, g));
}

at::Tensor &normal(at::Tensor &self, double mean, double std, OptGen g) {
  Off off(kKey);
  return self.normal_(mean, std, pick(self, g));
}

at::Tensor &uniform(at::Tensor &self, double from, double to, OptGen g) {
  Off off(kKey);
  return self.uniform_(from, to, pick(self, g));
}

// native_dropout is the fused dropout that CUDA tensors take (the CPU's
// dropout draws through bernoulli_). It names no generator, so with a
// stream in scope it is done here: the same mask semantics (a Bool mask
// off the CPU, as the CUDA backward wants it), output = input·mask/(1−p).
std::tuple<at::Tensor, at::Tensor> native_dropout(const at::Tensor &input, double p, c10::optional<bool> train) {
  Off off(kKey);
  OptGen g = pick(input, c10::nullopt);
  bool training = !train.has_value() || *train;
  if (!g.has_value() || !training || p <= 0 || p >= 1 || input.numel() == 0)
    return at::native_dropout(input, p, train);
  at::Tensor keep = at::empty_like(input).bernoulli_(1 - p, g);
  at::Tensor mask = input.is_cpu() ? keep : keep.to(at::kBool);
  return std::make_tuple(input.mul(keep).mul_(1 / (1 - p)), mask);
}

void register_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Held for the process's life: the registrations end with them.
    static auto fallthrough = std::make_unique<torch::Library>(torch::Library::IMPL, "_", kKey, __FILE__, __LINE__);
    fallthrough->fallback(torch::CppFunction::makeFallthrough());
    static auto aten = std::make_unique<torch::Library>(torch::Library::IMPL, "aten", kKey, __FILE__, __LINE__);
    aten->impl("bernoulli_.float", TORCH_FN(bernoulli_float));
    aten->impl("bernoulli_.Tensor", TORCH_FN(bernoulli_tensor));
    aten->impl("bernoulli", TORCH_FN(bernoulli));
    aten->impl("bernoulli.p", TORCH_FN(bernoulli_p));
    aten->impl("normal_", TORCH_FN(normal));
    aten->impl("uniform_", TORCH_FN(uniform));
    aten->impl("native_dropout", TORCH_FN(native_dropout));
  });
}

// A new generator for dev seeded with seed: the CPU's own kind, else a
// copy of the device's default (a CUDA generator) reseeded.
at::Generator make_rng(const c10::Device &dev, uint64_t seed) {
  if (dev.is_cpu()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator def = at::globalContext().defaultGenerator(dev);
  at::Generator g;
  {
    std::lock_guard<std::mutex> lock(def.mutex());
    g = def.clone();
  }
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(seed);
  return g;
}

}  // namespace

RngScope::RngScope(const at::Generator *gen) {
  if (gen == nullptr) return;
  prev_ = current;
  current = gen;
  include_.emplace(c10::DispatchKeySet(kKey));
}

RngScope::~RngScope() {
  if (include_) current = prev_;
}

}  // namespace gpt

extern "C" {

gpt_err gpt_module_set_rng(gpt_module h, int on, uint64_t seed) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  if (on == 0) {
    h->rng.reset();
    return nullptr;
  }
  gpt::register_kernels();
  h->rng = gpt::make_rng(h->device, seed);
  GPT_CATCH
}

}  // extern "C"
