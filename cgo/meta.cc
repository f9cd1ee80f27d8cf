// meta.cc: shape-only ("meta") runs of a module, for the IR export and the
// pruned model's run check.
//
// Both only need what shapes flow through forward, yet a real pass of a
// 224×224 resnet50 takes ~0.4 s and leaves 50–80 MB of freed activations
// resident in malloc's heap: that pass, not the model, set a one-shot
// prune's peak memory. On libtorch's Meta device every tensor has sizes,
// strides and a dtype but no storage, so the same forward costs only the
// interpreter's dispatch. libtorch 1.13's C++ build has no Meta kernels for
// a few ops every CNN uses (its Python package registers them in Python):
// convolution, batch/layer/group norm, relu, hardtanh, hardswish, prelu,
// adaptive average pooling to a size other than 1, 3-D max pooling,
// unpooling, channel shuffle, flip, weight normalisation, var_mean. This
// file registers shape functions for those, each only where the running libtorch
// has none, and swaps a module's tensors for meta twins for the length of
// one call.
//
// Anything else a model does that has no Meta kernel (or that reads a
// tensor's values) throws, and the callers then run the real pass, so the
// meta path can only make a run cheaper, never change what it records: the
// traced graph, and so the IR, is the same op for op (TestMetaPass).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "internal.h"

namespace {

using torch::jit::Stack;

at::Tensor meta_empty(at::IntArrayRef sizes, const at::Tensor &like) {
  return at::empty(sizes, like.options().device(at::kMeta));
}

// int[] arguments of one spatial rank: a list of one value applies to every
// dimension, as PyTorch's own kernels read them.
std::vector<int64_t> expand_arg(const c10::IValue &v, size_t n, int64_t dflt) {
  std::vector<int64_t> l = v.isNone() ? std::vector<int64_t>{} : v.toIntVector();
  if (l.empty()) return std::vector<int64_t>(n, dflt);
  if (l.size() == 1) return std::vector<int64_t>(n, l[0]);
  if (l.size() != n) throw std::invalid_argument("expected " + std::to_string(n) + " values, got " +
                                                  std::to_string(l.size()));
  return l;
}

// An optional tensor argument arrives as None or as an undefined tensor.
bool present(const c10::IValue &v) { return v.isTensor() && v.toTensor().defined(); }

// Checks that the optional per-channel tensors args[from..to] (a bias, a
// norm's weight, bias and statistics) hold n values each.
void check_numel(c10::ArrayRef<c10::IValue> args, size_t from, size_t to, int64_t n, const char *op) {
  for (size_t i = from; i <= to; i++)
    if (present(args[i]) && args[i].toTensor().numel() != n)
      throw std::invalid_argument(std::string("meta ") + op + ": argument " + std::to_string(i) +
                                  " holds " + std::to_string(args[i].toTensor().numel()) +
                                  " values for " + std::to_string(n));
}

std::string sizes_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

// convolution_overrideable(input, weight, bias?, stride, padding, dilation,
// transposed, output_padding, groups): libtorch routes every convolution
// whose device it has no kernel for here. The channel checks word their
// errors as the CPU kernel does, though a caller falls back to the real
// pass on any error and reports that one.
void conv_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 9);
  at::Tensor in = args[0].toTensor(), w = args[1].toTensor();
  bool transposed = args[6].toBool();
  int64_t groups = args[8].toInt();
  size_t k = static_cast<size_t>(w.dim()) - 2;
  if (in.dim() != w.dim() || w.dim() < 3 || groups < 1)
    throw std::invalid_argument("meta convolution: input " + sizes_str(in.sizes()) + ", weight " +
                                sizes_str(w.sizes()));
  auto stride = expand_arg(args[3], k, 1), pad = expand_arg(args[4], k, 0),
       dil = expand_arg(args[5], k, 1), opad = expand_arg(args[7], k, 0);
  std::vector<int64_t> out{in.size(0)};
  if (transposed) {
    if (in.size(1) != w.size(0))
      throw std::invalid_argument("Given transposed=1, weight of size " + sizes_str(w.sizes()) +
                                  ", expected input" + sizes_str(in.sizes()) + " to have " +
                                  std::to_string(w.size(0)) + " channels, but got " +
                                  std::to_string(in.size(1)) + " channels instead");
    out.push_back(w.size(1) * groups);
  } else {
    if (in.size(1) != w.size(1) * groups)
      throw std::invalid_argument("Given groups=" + std::to_string(groups) + ", weight of size " +
                                  sizes_str(w.sizes()) + ", expected input" + sizes_str(in.sizes()) +
                                  " to have " + std::to_string(w.size(1) * groups) +
                                  " channels, but got " + std::to_string(in.size(1)) +
                                  " channels instead");
    out.push_back(w.size(0));
  }
  for (size_t d = 0; d < k; d++) {
    int64_t i = in.size(2 + d), kk = dil[d] * (w.size(2 + d) - 1) + 1;
    int64_t o = transposed ? (i - 1) * stride[d] - 2 * pad[d] + kk + opad[d]
                           : (i + 2 * pad[d] - kk) / stride[d] + 1;
    if (o <= 0) throw std::invalid_argument("meta convolution: output size " + std::to_string(o));
    out.push_back(o);
  }
  check_numel(args, 2, 2, out[1], "convolution");
  at::Tensor r = meta_empty(out, in);
  torch::jit::drop(*stack, 9);
  torch::jit::push(*stack, r);
}


// native_batch_norm(input, weight?, bias?, running_mean?, running_var?,
// training, momentum, eps) -> (out, save_mean, save_invstd)
void batch_norm_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 8);
  at::Tensor in = args[0].toTensor();
  if (in.dim() < 2) throw std::invalid_argument("meta batch_norm: input " + sizes_str(in.sizes()));
  int64_t c = in.size(1);
  check_numel(args, 1, 4, c, "batch_norm");
  bool training = args[5].toBool();
  at::Tensor out = meta_empty(in.sizes(), in);
  std::vector<int64_t> stat{training ? c : 0};
  at::Tensor mean = meta_empty(stat, in), invstd = meta_empty(stat, in);
  torch::jit::drop(*stack, 8);
  torch::jit::push(*stack, out, mean, invstd);
}

// native_layer_norm(input, normalized_shape, weight?, bias?, eps)
void layer_norm_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 5);
  at::Tensor in = args[0].toTensor();
  std::vector<int64_t> ns = args[1].toIntVector();
  int64_t axis = in.dim() - static_cast<int64_t>(ns.size());
  if (ns.empty() || axis < 0)
    throw std::invalid_argument("meta layer_norm: input " + sizes_str(in.sizes()));
  int64_t n = 1;
  for (size_t i = 0; i < ns.size(); i++) {
    if (in.size(axis + static_cast<int64_t>(i)) != ns[i])
      throw std::invalid_argument("Given normalized_shape=" + sizes_str(ns) +
                                  ", expected input with shape [*, " +
                                  sizes_str(ns).substr(1) + ", but got input of size" +
                                  sizes_str(in.sizes()));
    n *= ns[i];
  }
  check_numel(args, 2, 3, n, "layer_norm");
  std::vector<int64_t> stat(in.sizes().begin(), in.sizes().begin() + axis);
  stat.resize(static_cast<size_t>(in.dim()), 1);
  at::Tensor out = meta_empty(in.sizes(), in);
  at::Tensor mean = meta_empty(stat, in), rstd = meta_empty(stat, in);
  torch::jit::drop(*stack, 5);
  torch::jit::push(*stack, out, mean, rstd);
}

// native_group_norm(input, weight?, bias?, N, C, HxW, group, eps)
void group_norm_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 8);
  at::Tensor in = args[0].toTensor();
  int64_t n = args[3].toInt(), c = args[4].toInt(), g = args[6].toInt();
  if (g < 1 || c % g != 0)
    throw std::invalid_argument("Expected number of channels in input to be divisible by num_groups, "
                                "but got input of shape " + sizes_str(in.sizes()) +
                                " and num_groups=" + std::to_string(g));
  check_numel(args, 1, 2, c, "group_norm");
  at::Tensor out = meta_empty(in.sizes(), in);
  at::Tensor mean = meta_empty({n, g}, in), rstd = meta_empty({n, g}, in);
  torch::jit::drop(*stack, 8);
  torch::jit::push(*stack, out, mean, rstd);
}

// Elementwise ops keep their input's shape; the in-place forms return self.
template <bool inplace>
void same_shape_meta(const c10::OperatorHandle &op, Stack *stack) {
  size_t n = op.schema().arguments().size();
  at::Tensor in = torch::jit::peek(*stack, 0, n).toTensor();
  at::Tensor r = inplace ? in : meta_empty(in.sizes(), in);
  torch::jit::drop(*stack, n);
  torch::jit::push(*stack, r);
}

// prelu(self, weight): one weight, or one per channel.
void prelu_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 2);
  at::Tensor in = args[0].toTensor(), w = args[1].toTensor();
  int64_t c = in.dim() > 1 ? in.size(1) : 1;
  if (w.numel() != 1 && w.numel() != c)
    throw std::invalid_argument("Mismatch of parameter numbers and input channel size. Found "
                                "parameter numbers = " + std::to_string(w.numel()) +
                                " and channel size = " + std::to_string(c) + ".");
  at::Tensor r = meta_empty(in.sizes(), in);
  torch::jit::drop(*stack, 2);
  torch::jit::push(*stack, r);
}

// _adaptive_avg_pool{2,3}d(self, output_size): the last k sizes replaced.
template <size_t k>
void adaptive_pool_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 2);
  at::Tensor in = args[0].toTensor();
  std::vector<int64_t> os = args[1].toIntVector();
  if (os.size() != k || in.dim() < static_cast<int64_t>(k) + 1)
    throw std::invalid_argument("meta adaptive pool: input " + sizes_str(in.sizes()) +
                                ", output_size " + sizes_str(os));
  std::vector<int64_t> out(in.sizes().begin(), in.sizes().end() - k);
  out.insert(out.end(), os.begin(), os.end());
  at::Tensor r = meta_empty(out, in);
  torch::jit::drop(*stack, 2);
  torch::jit::push(*stack, r);
}

// channel_shuffle(self, groups)
void channel_shuffle_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 2);
  at::Tensor in = args[0].toTensor();
  int64_t g = args[1].toInt();
  if (in.dim() < 3 || g < 1 || in.size(1) % g != 0)
    throw std::invalid_argument("Number of channels must be divisible by groups. Got " +
                                std::to_string(in.dim() > 1 ? in.size(1) : 0) + " channels and " +
                                std::to_string(g) + " groups.");
  at::Tensor r = meta_empty(in.sizes(), in);
  torch::jit::drop(*stack, 2);
  torch::jit::push(*stack, r);
}

// flip(self, dims): the same shape; dims must name dimensions of self.
void flip_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 2);
  at::Tensor in = args[0].toTensor();
  int64_t rank = std::max<int64_t>(in.dim(), 1);
  for (int64_t d : args[1].toIntVector())
    if (d < -rank || d >= rank)
      throw std::invalid_argument("Dimension out of range (expected to be in range of [" +
                                  std::to_string(-rank) + ", " + std::to_string(rank - 1) +
                                  "], but got " + std::to_string(d) + ")");
  at::Tensor r = meta_empty(in.sizes(), in);
  torch::jit::drop(*stack, 2);
  torch::jit::push(*stack, r);
}

// max_pool3d_with_indices(self, kernel_size, stride, padding, dilation,
// ceil_mode) -> (out, indices), sized as PyTorch's pooling_output_shape.
void max_pool3d_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 6);
  at::Tensor in = args[0].toTensor();
  if (in.dim() != 4 && in.dim() != 5)
    throw std::invalid_argument("meta max_pool3d: input " + sizes_str(in.sizes()));
  auto ks = expand_arg(args[1], 3, 1);
  auto st = expand_arg(args[2], 3, 0);
  for (size_t d = 0; d < 3; d++)
    if (st[d] == 0) st[d] = ks[d];
  auto pad = expand_arg(args[3], 3, 0), dil = expand_arg(args[4], 3, 1);
  bool ceil = args[5].toBool();
  std::vector<int64_t> out(in.sizes().begin(), in.sizes().end() - 3);
  for (size_t d = 0; d < 3; d++) {
    int64_t i = in.size(in.dim() - 3 + static_cast<int64_t>(d));
    int64_t num = i + 2 * pad[d] - dil[d] * (ks[d] - 1) - 1 + (ceil ? st[d] - 1 : 0);
    int64_t o = (num >= 0 ? num / st[d] : -((-num + st[d] - 1) / st[d])) + 1;
    if (ceil && (o - 1) * st[d] >= i + pad[d]) o--;
    if (o <= 0) throw std::invalid_argument("meta max_pool3d: output size " + std::to_string(o));
    out.push_back(o);
  }
  at::Tensor r = meta_empty(out, in);
  at::Tensor idx = at::empty(out, in.options().device(at::kMeta).dtype(at::kLong));
  torch::jit::drop(*stack, 6);
  torch::jit::push(*stack, r, idx);
}

// max_unpool2d(self, indices, output_size) and max_unpool3d(self, indices,
// output_size, stride, padding): self's leading dims, then output_size
// (SegNet's decoder); the indices must have self's shape.
template <size_t k, size_t nargs>
void max_unpool_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, nargs);
  at::Tensor in = args[0].toTensor();
  at::Tensor idx = args[1].toTensor();
  std::vector<int64_t> os = args[2].toIntVector();
  if (os.size() != k || in.dim() < static_cast<int64_t>(k) + 1 || idx.sizes() != in.sizes())
    throw std::invalid_argument("meta max_unpool: input " + sizes_str(in.sizes()) + ", indices " +
                                sizes_str(idx.sizes()) + ", output_size " + sizes_str(os));
  std::vector<int64_t> out(in.sizes().begin(), in.sizes().end() - k);
  out.insert(out.end(), os.begin(), os.end());
  at::Tensor r = meta_empty(out, in);
  torch::jit::drop(*stack, nargs);
  torch::jit::push(*stack, r);
}

// _weight_norm_interface(v, g, dim) -> (w, norms): the fused kernel that
// _weight_norm (torch.nn.utils.weight_norm, TCNs) calls for dim 0 or the
// last dim. w has v's shape; norms, one per slice along dim, g's.
void weight_norm_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 3);
  at::Tensor v = args[0].toTensor(), g = args[1].toTensor();
  int64_t dim = args[2].toInt();
  if (v.dim() == 0 || dim < -1 || dim >= v.dim() || g.numel() != (dim < 0 ? 1 : v.size(dim)))
    throw std::invalid_argument("meta weight_norm: v " + sizes_str(v.sizes()) + ", g " + sizes_str(g.sizes()) +
                                ", dim " + std::to_string(dim));
  at::Tensor w = meta_empty(v.sizes(), v), norms = meta_empty(g.sizes(), g);
  torch::jit::drop(*stack, 3);
  torch::jit::push(*stack, w, norms);
}

// var_mean.correction(self, dim?, *, correction?, keepdim) -> (var, mean),
// and std_mean: the statistics BiT's StdConv2d takes of each filter. Both
// outputs have the input's shape less the reduced dims (all of them for
// none), kept as 1 with keepdim.
void var_mean_meta(const c10::OperatorHandle &, Stack *stack) {
  auto args = torch::jit::last(*stack, 4);
  at::Tensor in = args[0].toTensor();
  std::vector<int64_t> dims = args[1].isNone() ? std::vector<int64_t>{} : args[1].toIntVector();
  bool keep = args[3].toBool();
  int64_t n = in.dim();
  std::vector<bool> reduced(static_cast<size_t>(n), dims.empty());
  for (int64_t d : dims) {
    int64_t w = d < 0 ? d + n : d;
    if (w < 0 || w >= n)
      throw std::invalid_argument("meta var_mean: dim " + std::to_string(d) + " of input " + sizes_str(in.sizes()));
    reduced[static_cast<size_t>(w)] = true;
  }
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; i++) {
    if (!reduced[static_cast<size_t>(i)])
      out.push_back(in.size(i));
    else if (keep)
      out.push_back(1);
  }
  at::Tensor v = meta_empty(out, in), m = meta_empty(out, in);
  torch::jit::drop(*stack, 4);
  torch::jit::push(*stack, v, m);
}

struct MetaKernel {
  const char *name, *overload;
  torch::CppFunction (*make)();
};

template <c10::BoxedKernel::BoxedKernelFunction *f>
torch::CppFunction boxed() {
  return torch::CppFunction::makeFromBoxedFunction<f>();
}

bool register_kernels() {
  static const MetaKernel kernels[] = {
      {"convolution_overrideable", "", boxed<conv_meta>},
      {"native_batch_norm", "", boxed<batch_norm_meta>},
      {"native_layer_norm", "", boxed<layer_norm_meta>},
      {"native_group_norm", "", boxed<group_norm_meta>},
      {"relu", "", boxed<same_shape_meta<false>>},
      {"relu_", "", boxed<same_shape_meta<true>>},
      {"hardtanh", "", boxed<same_shape_meta<false>>},
      {"hardtanh_", "", boxed<same_shape_meta<true>>},
      {"hardswish", "", boxed<same_shape_meta<false>>},
      {"hardswish_", "", boxed<same_shape_meta<true>>},
      {"channel_shuffle", "", boxed<channel_shuffle_meta>},
      {"flip", "", boxed<flip_meta>},
      {"prelu", "", boxed<prelu_meta>},
      {"_adaptive_avg_pool2d", "", boxed<adaptive_pool_meta<2>>},
      {"_adaptive_avg_pool3d", "", boxed<adaptive_pool_meta<3>>},
      {"max_pool3d_with_indices", "", boxed<max_pool3d_meta>},
      {"max_unpool2d", "", boxed<max_unpool_meta<2, 3>>},
      {"max_unpool3d", "", boxed<max_unpool_meta<3, 5>>},
      {"_weight_norm_interface", "", boxed<weight_norm_meta>},
      {"var_mean", "correction", boxed<var_mean_meta>},
      {"std_mean", "correction", boxed<var_mean_meta>},
  };
  // Registrations live as long as the library object: for the process.
  static torch::Library *lib =
      new torch::Library(torch::Library::IMPL, "aten", c10::DispatchKey::Meta, __FILE__, __LINE__);
  for (const auto &k : kernels) {
    auto op = c10::Dispatcher::singleton().findSchema({std::string("aten::") + k.name, k.overload});
    if (!op) continue;
    // Only a kernel registered for Meta itself counts: 1.13 fills the Meta
    // entry of convolution_overrideable from a CompositeExplicitAutograd
    // kernel that just throws "not implemented".
    if (op->hasKernelForDispatchKey(c10::DispatchKey::Meta)) continue;  // a newer libtorch's
    std::string full = *k.overload ? std::string(k.name) + "." + k.overload : std::string(k.name);
    lib->impl(full.c_str(), k.make());
  }
  return true;
}

}  // namespace

namespace gpt {

bool meta_ready() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    try {
      ok = register_kernels();
    } catch (...) {
      ok = false;  // a libtorch whose schemas differ: real passes only
    }
  });
  return ok;
}

at::Tensor meta_like(const at::Tensor &t) {
  return at::empty_strided(t.sizes(), t.strides(), t.options().device(at::kMeta));
}

MetaModule::MetaModule(const torch::jit::Module &m) {
  // One twin per tensor, so tensors that several attributes share (tied
  // weights) stay one tensor, as the tracer sees them in the real pass.
  std::unordered_map<c10::TensorImpl *, at::Tensor> twin;
  try {
    each_slot(m, [&](const c10::intrusive_ptr<c10::ivalue::Object> &obj, size_t i, const c10::IValue &v) {
      if (!v.isTensor() || !v.toTensor().defined() || v.toTensor().is_meta()) return;
      at::Tensor t = v.toTensor();
      auto it = twin.find(t.unsafeGetTensorImpl());
      if (it == twin.end()) it = twin.emplace(t.unsafeGetTensorImpl(), meta_like(t)).first;
      saved_.push_back({obj, i, v});
      obj->setSlot(i, it->second);
    });
  } catch (...) {
    restore();
    throw;
  }
}

std::string meta_pass(gpt_module_s *h, const std::vector<at::Tensor> &inputs,
                      const std::function<void(const std::vector<at::Tensor> &)> &fn) {
  if (!meta_ready()) return "no Meta kernels in this libtorch";
  if (h->device.type() != c10::kCPU) return "not a CPU module";
  Entry entry(h);
  std::optional<MetaModule> swap;
  std::string why;
  try {
    std::vector<at::Tensor> in;
    in.reserve(inputs.size());
    for (const at::Tensor &t : inputs) in.push_back(meta_like(t));
    swap.emplace(h->m);
    // The pass reads no real tensor: their bytes wait in the file
    // (origin.cc), and go on waiting after it until a call needs them
    // (gpt::unpark, or one tensor at a time: scoring reads them, surgery
    // reads only what it keeps). The heap's other free pages go back too
    // (the ends of blocks that surgery cut), so that the pass starts from
    // the lowest footprint; the passes run once or twice a run (the IR
    // export, the run check), and the trims cost a few ms in all.
    if (!h->parked && h->origin) h->parked = std::make_unique<Offload>(h->origin);
    if (h->parked) h->parked->drop(swap->tensors());
    release_freed();
    fn(in);
  } catch (const c10::Error &e) {
    why = e.what_without_backtrace();
  } catch (const std::exception &e) {
    why = e.what();
  }
  // What the pass freed goes back: its callers (the IR export, the run
  // check) trim nothing more.
  release_freed();
  return why;
}

std::vector<const c10::IValue *> MetaModule::tensors() const {
  std::vector<const c10::IValue *> r;
  r.reserve(saved_.size());
  for (const Saved &s : saved_) r.push_back(&s.value);
  return r;
}

void MetaModule::restore() {
  for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) it->obj->setSlot(it->slot, it->value);
  saved_.clear();
}

}  // namespace gpt
