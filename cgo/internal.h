// internal.h: C++-only helpers shared by the shim's translation units.
#pragma once

#include <ATen/Parallel.h>
#include <c10/core/Stream.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/version.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "gptorch.h"

struct gpt_tensor_s {
  at::Tensor t;
};

namespace gpt {
struct Origin;
class Offload;
}

struct gpt_module_s {
  torch::jit::Module m;
  c10::Device device{c10::kCPU};
  int threads = 0;
  // Whether the forward accepts channels-last (NHWC) image batches: -1 not
  // probed yet, 0 no (it views an activation as NCHW), 1 yes. See train.cc.
  int nhwc = -1;
  // Made by gpt_module_clone: its class types and their methods are its own
  // (see gpt_module_free).
  bool cloned = false;
  // The CUDA stream this module's steps run on (see gpt::CudaScope): one
  // per module, so the cart slots that share a GPU, each with its own
  // module, queue their kernels independently. Taken from libtorch's pool
  // on the first step.
  std::optional<c10::Stream> stream;
  // The module's own random stream (gpt_module_set_rng): dropout masks and
  // the like in its calls come from it instead of libtorch's process-wide
  // generator. Unset: the process-wide one.
  std::optional<at::Generator> rng;
  // Where the module's tensors lie in the file it was loaded from (origin.cc);
  // null for a module from memory, a clone, a non-CPU module.
  std::shared_ptr<gpt::Origin> origin;
  // The tensors whose bytes wait in that file since a shape-only pass (null:
  // none). Every call that may read or hand out the module's tensors calls
  // gpt::unpark first (or reads one tensor through it); the calls that read
  // none (names, shapes, the shape-only passes, free) leave them waiting.
  std::unique_ptr<gpt::Offload> parked;
  ~gpt_module_s();
};

namespace gpt {

extern std::atomic<int64_t> live_tensors;
extern std::atomic<int64_t> live_modules;
// gpt_set_channels_last (0 off, 1 on, 2 CUDA only); read by train.cc.
extern std::atomic<int> channels_last;
// gpt_set_cuda_options: CUDA mixed precision, 0 off, 1 bf16, 2 fp16.
extern std::atomic<int> amp;

inline char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p != nullptr) {
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = 0;
  }
  return p;
}

inline gpt_tensor wrap(at::Tensor t) {
  live_tensors++;
  return new gpt_tensor_s{std::move(t)};
}

// apply_threads makes n (> 0) the calling OS thread's intra-op thread
// count and, where libtorch's BLAS is OpenBLAS (Debian's libtorch), the
// BLAS's too. ATen hands its count to MKL but not to OpenBLAS, whose pool
// otherwise keeps one thread per core whatever --threads says: one pool
// that every cart slot's matrix products share, its idle threads spinning
// in sched_yield. OpenBLAS's count is process-wide, not per thread; cart
// slots run with equal counts, so it changes only between phases of a run.
void apply_threads(int n);
// process_threads is the count a module without a budget of its own runs
// at, on whichever OS thread calls it: gpt_set_num_threads's, else
// libtorch's default. OpenMP keeps the count per OS thread, and a thread
// that first runs libtorch takes the count set last anywhere in the
// process; a module without a budget ran at whatever its calling thread
// had, and a depthwise convolution computes other bits at 1 thread than at
// 2 (mobilenet_v2: two forwards of one batch differed when Go put them on
// two OS threads).
int process_threads();
// blas_threads is OpenBLAS's thread count, or -1 where libtorch's BLAS is
// not OpenBLAS (MKL follows at::set_num_threads by itself).
int blas_threads();
// set_blas_threads sets OpenBLAS's thread count (n > 0); nothing elsewhere.
void set_blas_threads(int n);

// RngScope makes gen, when not null, the source of the random numbers that ops
// on the calling thread draw without a generator of their own (dropout's
// bernoulli_, stochastic depth, normal_/uniform_ fills), for its length.
// libtorch has one default generator per device for the whole process:
// cart slots that train or score at the same time took turns on it, so
// which mask a slot got depended on the other slot's timing, and a
// search's history on scheduling. The ops are rerouted through
// libtorch's CustomRNGKeyId dispatch key (rng.cc), included on the thread
// while the scope lasts.
class RngScope {
 public:
  explicit RngScope(const at::Generator *gen);
  ~RngScope();
  RngScope(const RngScope &) = delete;
  RngScope &operator=(const RngScope &) = delete;

 private:
  const at::Generator *prev_ = nullptr;
  // Engaged when the scope reroutes the thread's draws (gen not null).
  std::optional<c10::impl::IncludeDispatchKeyGuard> include_;
};

// Entry prepares the calling OS thread to run m, for the length of a call
// that runs a module; every such call holds one. It makes the module's
// random stream the thread's (RngScope), and it applies the module's
// thread budget, or the process's count to a module without one: OpenMP
// keeps the thread count per thread, so each cart worker gets its own
// share, and a module runs at the same count on any OS thread. And it
// turns TorchScript's graph optimiser off (a per-thread setting, restored
// at the end): a method's executor keeps
// the plan it made on its first run, optimised or not, so what ran first
// used to decide how every later step ran, and the plain plans are the
// faster ones here: with the optimiser on, a ResNet-20 search's
// fine-tunes took 26-39% longer (the profiling runs, and the specialised,
// differentiable plans that every new clone made again).
class Entry {
 public:
  explicit Entry(const gpt_module_s *m) : opt_(false), rng_(m != nullptr && m->rng ? &*m->rng : nullptr) {
    if (m != nullptr) apply_threads(m->threads > 0 ? m->threads : process_threads());
  }

 private:
  torch::jit::GraphOptimizerEnabledGuard opt_;
  RngScope rng_;
};

// CudaScope sets up a step of a module on a CUDA device (nothing on the
// CPU): for its length the thread's current stream is the module's own,
// which first waits for the work already queued on the stream the caller
// had (tensors it uploaded, surgery), and which that stream waits for at
// the end, so work queued before and after the step sees its results
// without a host synchronisation. With autocast, and amp on, the step's
// ops run in bf16 or fp16 where autocast's op lists allow it.
class CudaScope {
 public:
  CudaScope(gpt_module_s *m, bool autocast);
  ~CudaScope();
  CudaScope(const CudaScope &) = delete;
  CudaScope &operator=(const CudaScope &) = delete;
  // fp16 autocast is on: gradients need loss scaling.
  bool fp16() const { return amp_ == 2; }
  // Autocast is on for this step.
  bool autocast() const { return amp_ != 0; }

 private:
  std::optional<c10::Stream> outer_, inner_;
  std::optional<c10::StreamGuard> guard_;
  int amp_ = 0;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

// on_device is t on dev: t itself when it is there, else a copy, queued
// without waiting when t is in pinned host memory. Steps take their
// batches on the host (gpt_tensor_from_data_pinned) and upload them here,
// on the module's stream.
at::Tensor on_device(const at::Tensor &t, const c10::Device &dev);

// drop_grads is zero_grad(set_to_none=True), as PyTorch's loops use it: the
// next backward writes gradients instead of adding to zeros (1.13's C++
// zero_grad only zeroes), and optimizers skip a parameter without one.
template <class Params>
void drop_grads(Params &&params) {
  for (at::Tensor p : params)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

at::ScalarType to_scalar(int dtype);
int from_scalar(at::ScalarType s);
c10::Device parse_device(const char *device);
std::vector<int64_t> dims_of(const int64_t *dims, int n);
// Resolves a dotted attribute path to its owning submodule and leaf name.
torch::jit::Module owner_of(const torch::jit::Module &root,
                            const std::string &dotted, std::string *leaf);
// What forward returned (output.cc): each tensor with its path ("out",
// "aux.0"; "" for a bare tensor), in the order forward built them.
struct OutputLeaf {
  std::string path;
  at::Tensor t;
};
void set_output_spec(const std::string &spec);
std::string output_spec();
void flatten_output(const c10::IValue &v, const std::string &path, std::vector<OutputLeaf> *out);
// A one-line type of v, e.g. "dict(out: tensor, aux: tensor)".
std::string describe_output(const c10::IValue &v);
// The path of the tensor that spec selects; std::invalid_argument naming the
// available paths when it selects none.
std::string select_path(const c10::IValue &v, const std::string &spec);
// The prediction: the tensor the output setting selects.
at::Tensor select_output(const c10::IValue &v);
// {"structure", "paths", "selected", "error"} of v under the output setting.
std::string output_info_json(const c10::IValue &v, const std::vector<OutputLeaf> &leaves);
void json_str(std::ostringstream &o, const std::string &s);  // ir.cc
// The tensors of the n input handles; throws "<what>: NULL input tensor"
// on a NULL handle (module.cc).
std::vector<at::Tensor> tensors_of(const gpt_tensor *inputs, int n, const char *what);
// Runs forward of h on the n inputs (under no_grad when asked) and returns
// its whole result; throws on a NULL input or a model without forward.
c10::IValue run_forward(gpt_module_s *h, const gpt_tensor *inputs, int n, int no_grad);  // module.cc
// Gives the dotted name of a prim::GetAttr chain that starts at a graph's
// self input, or "" when v is not such a chain (module.cc; ir.cc uses it too).
std::string attr_chain(torch::jit::Value *v, torch::jit::Value *self);
// Inlines every call in g, each callee's graph with its own calls inlined
// first, so that every node's callstack runs from g down (module.cc).
void inline_all(torch::jit::Graph &g);
// inline_weights inlines, in g (a root method), only the calls that lead
// to a use of a weight in names: the methods of the modules on the way to
// each (their paths are prefixes of the names) and any call the weight is
// handed to. What an edit of those uses needs, at a fraction of the whole
// model inlined.
void inline_weights(torch::jit::Graph &g, const std::set<std::string> &names);
// A node's site: the source ranges of the calls that lead to it and of the
// node itself, which the trace records for each op of a sited kind (ir.cc)
// and surgery uses to find that op in the module's inlined forward
// (module.cc). Sited kinds are the ops whose size argument surgery can
// rewrite: view and reshape (a size list), split (a part size).
bool sited_kind(c10::Symbol k);
std::string site_of(const torch::jit::Node *n);
// Whether surgery can rewrite node n's size argument: a split's int part
// size, a reshape's size list where the code writes it out.
bool sized_arg_written(const torch::jit::Node *n);

// meta.cc: shape-only passes. meta_ready registers the Meta kernels this
// libtorch lacks (once) and says whether meta passes can be tried at all.
bool meta_ready();
at::Tensor meta_like(const at::Tensor &t);
// Runs fn on meta twins of inputs while h's tensors are swapped for
// theirs (MetaModule). Returns "" when fn succeeded, else why it failed (an
// op without a Meta kernel, a read of tensor values, a shape error).
std::string meta_pass(gpt_module_s *h, const std::vector<at::Tensor> &inputs,
                      const std::function<void(const std::vector<at::Tensor> &)> &fn);

// Unrun drops, at the end of its scope, what running left in every method
// of m's class types: the methods are then as if nothing had run them.
// Running forward leaves, in every method it calls, an executor with a
// copy of the method's graph and a plan (another copy, and its compiled
// code), kept for the module's life: 10 MB of a mobilenet_v2 and 22 MB of
// a densenet121 after the IR export's trace, nearly their files' sizes
// again, which a shape-only pass (meta_pass) never needs again. It empties
// the functions in place; replacing each by a new function, as it did
// before, made the new ones among the run's freed blocks, where they kept
// 4 MB of a densenet121's heap pages resident after the pass. m must not
// run on another thread meanwhile (the handles' calls never share a module
// across threads). It copies nothing: running a copy of the module
// (Module::clone) instead, as the passes did before, cost the copy's
// graphs on top (3.6 MB of a mobilenet_v2's peak, 7.9 MB of a
// densenet121's).
class Unrun {
 public:
  explicit Unrun(const torch::jit::Module &m) : m_(m) {}
  ~Unrun();
  Unrun(const Unrun &) = delete;
  Unrun &operator=(const Unrun &) = delete;

 private:
  torch::jit::Module m_;
};

// release_freed hands the heap's free pages back to the system. malloc
// keeps freed memory resident (gpt_tune_malloc's trim threshold keeps a
// search's tensors from being unmapped and faulted in again), and a heap
// that holds the model's tensors around what a pass freed reuses it only
// in part; after the one-off passes of a one-shot prune (the IR export,
// the run check), returning it lowered a densenet121's peak by 8 MB.
void release_freed();

// each_slot calls f(obj, i, value) for every attribute slot of m and its
// submodules, in the modules' order.
template <class F>
void each_slot(const torch::jit::Module &m, F f) {
  for (const torch::jit::Module &sub : m.modules()) {
    c10::intrusive_ptr<c10::ivalue::Object> obj = sub._ivalue();
    for (size_t i = 0; i < obj->slots().size(); i++) f(obj, i, obj->getSlot(i));
  }
}

// MetaModule swaps every tensor attribute of m and its submodules for a
// meta twin until it goes out of scope. m must not be used by another
// thread meanwhile; the handles' calls never share a module across threads.
class MetaModule {
 public:
  explicit MetaModule(const torch::jit::Module &m);
  ~MetaModule() { restore(); }
  MetaModule(const MetaModule &) = delete;
  MetaModule &operator=(const MetaModule &) = delete;
  // The real tensors, one entry per attribute swapped.
  std::vector<const c10::IValue *> tensors() const;

 private:
  struct Saved {
    c10::intrusive_ptr<c10::ivalue::Object> obj;
    size_t slot;
    c10::IValue value;
  };
  std::vector<Saved> saved_;
  void restore();
};

// origin.cc. Origin is where a loaded module's tensor blocks lie in its
// file: a block's address maps to the place its bytes were read from.
struct Origin {
  struct Place {
    uint64_t pos = 0;
    size_t n = 0;
  };
  std::string path;
  std::unordered_map<const void *, Place> places;
};

// Fd closes a file descriptor when it goes.
struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  ~Fd();
};

// load_module is torch::jit::load(path, dev) that also says where the
// tensors lie (*origin stays null for anything but a zip archive).
torch::jit::Module load_module(const std::string &path, c10::optional<c10::Device> dev,
                               std::shared_ptr<Origin> *origin);

// Pages is a buffer of its own anonymous mapping, whose pages go back to
// the kernel when it goes: a freed heap block's would stay resident until a
// trim (the copies that reading parked tensors makes added up to 15 MB of a
// densenet121's surgery).
class Pages {
 public:
  Pages() = default;
  ~Pages() { reset(0); }
  Pages(const Pages &) = delete;
  Pages &operator=(const Pages &) = delete;
  // reset frees the buffer and maps n bytes (none for 0), their pages
  // present; throws when the kernel refuses.
  void reset(size_t n);
  // release hands the mapping to the caller, who unmaps it (unmap).
  char *release();
  static void unmap(void *p, size_t n);
  char *data() const { return p_; }

 private:
  char *p_ = nullptr;
  size_t n_ = 0;
};

// Offload hands the pages of file-backed tensors back to the kernel from a
// shape-only pass until a call needs their bytes (see origin.cc). drop
// takes the real tensors of a MetaModule and parks those whose bytes still
// equal the file's and that nothing else holds, within a room; restore
// reads every parked block back in place. A parked storage is held (its
// block cannot be freed or reused meanwhile), and every read of one is
// checked against the hash its bytes had: when the file no longer holds
// them, restore and restore_one zero-fill the block and throw, read and
// take throw, so the caller's run ends on the error and no tensor is ever
// half read.
class Offload {
 public:
  explicit Offload(std::shared_ptr<Origin> origin) : origin_(std::move(origin)) {}
  // Reads back whatever is still parked (errors dropped): the owner
  // restores first (unpark) or forgets (its module goes).
  ~Offload();
  Offload(const Offload &) = delete;
  Offload &operator=(const Offload &) = delete;
  void drop(const std::vector<const c10::IValue *> &tensors);
  void restore();
  // Whether s is parked.
  bool parked(const c10::StorageImpl *s) const { return items_.count(s) != 0; }
  // restore_one reads s back into its block and unparks it; read copies
  // its bytes to dst (nbytes) and leaves it parked; take unparks it and
  // gives its bytes to *bytes (mapped to fit) instead of its block, whose
  // pages stay empty until the caller writes them. Each is a no-op (false)
  // for a storage that is not parked.
  bool restore_one(const c10::StorageImpl *s);
  bool read(const c10::StorageImpl *s, void *dst);
  bool take(const c10::StorageImpl *s, Pages *bytes);
  // forget unparks everything without reading it: the module and its
  // blocks are going.
  void forget();
  // The bytes whose pages are out (for the tests).
  size_t bytes() const { return bytes_; }

 private:
  struct Item {
    c10::Storage s;  // held: the block stays allocated while its pages are out
    Origin::Place at;
    uint64_t sum;
    size_t pages;  // the bytes madvise gave back
  };
  std::shared_ptr<Origin> origin_;
  std::map<const c10::StorageImpl *, Item> items_;
  Fd fd_;
  size_t bytes_ = 0;
  // fill reads an item's bytes into dst and checks them; false when the file
  // no longer holds them.
  bool fill(const Item &it, void *dst) const;
  std::string changed(const Item &it) const;
};

// unpark reads every tensor of h that waits in its file back into place
// (a no-op when none does); see gpt_module_s::parked.
void unpark(gpt_module_s *h);

}  // namespace gpt

#define GPT_CHECK_HANDLE(h, what)                  \
  if ((h) == nullptr) {                            \
    return gpt::dup(std::string(what) + " is NULL"); \
  }

#define GPT_TRY try {
#define GPT_CATCH                                              \
  }                                                            \
  catch (const c10::Error &e) {                                \
    return gpt::dup(e.what_without_backtrace());               \
  }                                                            \
  catch (const std::exception &e) {                            \
    return gpt::dup(e.what());                                 \
  }                                                            \
  catch (...) {                                                \
    return gpt::dup("unknown C++ exception");                  \
  }                                                            \
  return nullptr;
