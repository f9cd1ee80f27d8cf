// module.cc: TorchScript modules: load, save, clone, forward, attributes and
// channel surgery.
#include <c10/core/CPUAllocator.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/csrc/jit/runtime/interpreter.h>
#include <torch/csrc/jit/serialization/import.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <unistd.h>

#include "internal.h"

namespace gpt {

std::atomic<int64_t> live_modules{0};

torch::jit::Module owner_of(const torch::jit::Module &root,
                            const std::string &dotted, std::string *leaf) {
  torch::jit::Module cur = root;
  size_t start = 0;
  while (true) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) {
      *leaf = dotted.substr(start);
      return cur;
    }
    std::string part = dotted.substr(start, dot - start);
    if (!cur.hasattr(part))
      throw std::invalid_argument("no attribute \"" + part + "\" in \"" + dotted + "\"");
    c10::IValue v = cur.attr(part);
    if (!v.isObject())
      throw std::invalid_argument("\"" + part + "\" in \"" + dotted + "\" is not a submodule");
    cur = torch::jit::Module(v.toObject());
    start = dot + 1;
  }
}

std::string attr_chain(torch::jit::Value *v, torch::jit::Value *self) {
  std::vector<std::string> parts;
  while (v != self) {
    torch::jit::Node *n = v->node();
    if (n->kind() != c10::prim::GetAttr) return "";
    parts.push_back(n->s(c10::attr::name));
    v = n->input(0);
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += ".";
    out += *it;
  }
  return out;
}

std::vector<at::Tensor> tensors_of(const gpt_tensor *inputs, int n, const char *what) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) {
    if (inputs[i] == nullptr) throw std::runtime_error(std::string(what) + ": NULL input tensor");
    out.push_back(inputs[i]->t);
  }
  return out;
}

c10::IValue run_forward(gpt_module_s *h, const gpt_tensor *inputs, int n, int no_grad) {
  Entry entry(h);
  unpark(h);
  if (!h->m.find_method("forward")) throw std::runtime_error("the model has no forward method");
  std::vector<at::Tensor> ts = tensors_of(inputs, n, "forward");
  std::vector<c10::IValue> in(ts.begin(), ts.end());
  if (no_grad) {
    at::NoGradGuard ng;
    return h->m.forward(in);
  }
  return h->m.forward(in);
}

// The graph function a call node calls, or nullptr.
static torch::jit::GraphFunction *called(const torch::jit::Node *n) {
  if (n->kind() == c10::prim::CallMethod) {
    auto cls = n->input(0)->type()->cast<c10::ClassType>();
    torch::jit::Function *f = cls ? cls->findMethod(n->s(c10::attr::name)) : nullptr;
    return f ? torch::jit::tryToGraphFunction(*f) : nullptr;
  }
  if (n->kind() != c10::prim::CallFunction || n->inputs().empty() ||
      n->input(0)->node()->kind() != c10::prim::Constant)
    return nullptr;
  auto ft = n->input(0)->type()->cast<c10::FunctionType>();
  return ft ? torch::jit::tryToGraphFunction(*ft->function()) : nullptr;
}

// called, for inlining: a CallFunction loses its function input, as torch's
// Inline removes it before inlining.
static torch::jit::GraphFunction *callee_of(torch::jit::Node *n) {
  torch::jit::GraphFunction *f = called(n);
  if (f && n->kind() == c10::prim::CallFunction) n->removeInput(0);
  return f;
}

// inline_calls inlines every call in b, each callee's own graph with its
// calls inlined first. Every inlined node's callstack then runs from b's
// call sites down to the node (gpt::site_of). torch's Inline inlines each
// callee's cached optimised graph, which, made with the optimiser off (as
// every run of gopruner's makes it), still holds that callee's calls; a
// second pass over those gives the nodes it inlines only the inner call's
// place, and two calls of one module then look the same.
static void inline_calls(torch::jit::Block *b, int depth) {
  if (depth > 64) return;  // recursion TorchScript does not allow anyway
  for (auto it = b->nodes().begin(); it != b->nodes().end();) {
    torch::jit::Node *n = *it;
    ++it;
    for (torch::jit::Block *sub : n->blocks()) inline_calls(sub, depth);
    torch::jit::GraphFunction *fn = callee_of(n);
    if (fn == nullptr) continue;
    fn->ensure_defined();
    std::shared_ptr<torch::jit::Graph> g = fn->graph()->copy();
    inline_calls(g->block(), depth + 1);
    torch::jit::inlineCallTo(n, fn, g.get());
  }
}

// Inlines every call in g, callees first (inline_calls). A call it leaves
// (of a function that is no graph) torch's Inline would leave too.
void inline_all(torch::jit::Graph &g) { inline_calls(g.block(), 0); }

namespace {

std::string join_path(const std::string &a, const std::string &b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "." + b;
}

// The dotted path of v from the root, where v is self (the module at path)
// or a chain of attributes from it (a submodule, a weight); false when v
// is neither.
bool attr_path(torch::jit::Value *v, torch::jit::Value *self, const std::string &path, std::string *out) {
  if (v == self) {
    *out = path;
    return true;
  }
  std::string rel = attr_chain(v, self);
  if (rel.empty()) return false;
  *out = join_path(path, rel);
  return true;
}

// inline_toward inlines, in b (a method of the module at path whose self
// is self), the calls that can reach a use of a weight in names: a method
// of a module whose path leads to one of them, and any call handed one
// (inlined whole). The rest stay calls.
void inline_toward(torch::jit::Block *b, torch::jit::Value *self, const std::string &path,
                   const std::set<std::string> &names, int depth) {
  if (depth > 64) return;  // recursion TorchScript does not allow anyway
  auto leads = [&names](const std::string &p) {
    if (p.empty()) return !names.empty();
    auto it = names.lower_bound(p + ".");
    return it != names.end() && it->compare(0, p.size() + 1, p + ".") == 0;
  };
  for (auto it = b->nodes().begin(); it != b->nodes().end();) {
    torch::jit::Node *n = *it;
    ++it;
    for (torch::jit::Block *sub : n->blocks()) inline_toward(sub, self, path, names, depth);
    if (called(n) == nullptr) continue;
    bool handed = false;
    for (torch::jit::Value *in : n->inputs()) {
      std::string p;
      handed = handed || (attr_path(in, self, path, &p) && names.count(p) > 0);
    }
    // A method of a module found from self whose path leads to a name; a
    // module from elsewhere, or a function not handed a weight, holds none.
    std::string callee_path;
    bool toward = n->kind() == c10::prim::CallMethod && attr_path(n->input(0), self, path, &callee_path) &&
                  leads(callee_path);
    if (!handed && !toward) continue;
    torch::jit::GraphFunction *fn = callee_of(n);
    fn->ensure_defined();
    std::shared_ptr<torch::jit::Graph> g = fn->graph()->copy();
    if (handed)
      inline_calls(g->block(), depth + 1);
    else
      inline_toward(g->block(), g->inputs().at(0), callee_path, names, depth + 1);
    torch::jit::inlineCallTo(n, fn, g.get());
  }
}

}  // namespace

void inline_weights(torch::jit::Graph &g, const std::set<std::string> &names) {
  inline_toward(g.block(), g.inputs().at(0), "", names, 0);
}

}  // namespace gpt

namespace {

gpt_module make(torch::jit::Module m, c10::Device dev, int threads) {
  gpt::live_modules++;
  auto *h = new gpt_module_s;
  h->m = std::move(m);
  h->device = dev;
  h->threads = threads;
  return h;
}

void check_forward(const torch::jit::Module &m) {
  if (!m.find_method("forward"))
    throw std::runtime_error("the model has no forward method");
}

// forward's function, for its graph, schema and name; throws when the model
// has none.
torch::jit::GraphFunction &forward_function(const torch::jit::Module &m) {
  check_forward(m);
  return torch::jit::toGraphFunction(m.get_method("forward").function());
}

// Runs forward once through an interpreter made for this call and dropped
// after it, rather than through the method's executor, which keeps its
// plan (a copy of the graph and its compiled code) for the module's life.
// After a graph edit forward holds every call it inlined (all of them,
// before edits inlined only what they need), and that plan held 20 MB of
// a mobilenet_v2's one-shot prune until exit, which a throw-away check
// never runs again. Callees run through their executors, which the run
// check's shape-only pass drops afterwards (gpt::Unrun).
void run_uncached(const torch::jit::Module &m, const std::vector<at::Tensor> &in) {
  torch::jit::GraphFunction &fn = forward_function(m);
  torch::jit::Stack stack;
  stack.reserve(in.size() + 1);
  stack.emplace_back(m._ivalue());
  for (const auto &t : in) stack.emplace_back(t);
  // What Method's call does before running: arity, types and defaults.
  fn.getSchema().checkAndNormalizeInputs(stack);
  torch::jit::Code code(fn.graph(), fn.name());
  torch::jit::InterpreterState(code).run(stack);
}

// Whether b calls a method or function anywhere.
bool makes_calls(torch::jit::Block *b) {
  for (torch::jit::Node *n : b->nodes()) {
    if (n->kind() == c10::prim::CallMethod || n->kind() == c10::prim::CallFunction) return true;
    for (torch::jit::Block *sub : n->blocks())
      if (makes_calls(sub)) return true;
  }
  return false;
}

int groups_input_index(const torch::jit::Node *n) {
  auto k = n->kind();
  if (k == c10::aten::_convolution || k == c10::aten::convolution) return 8;
  // _convolution_mode (conv with padding="same"/"valid", as traces record
  // it) takes convNd's arguments.
  if (k == c10::aten::conv2d || k == c10::aten::conv1d || k == c10::aten::conv3d ||
      k == c10::aten::_convolution_mode)
    return 6;
  // conv_transpose{1,2,3}d(input, weight, bias, stride, padding, output_padding, groups, dilation)
  if (k == c10::aten::conv_transpose1d || k == c10::aten::conv_transpose2d ||
      k == c10::aten::conv_transpose3d)
    return 6;
  return -1;
}

// A new size argument for the ops of one weight, as an int (a conv's or a
// group norm's groups) and as an int[] (a LayerNorm's normalized_shape).
struct SizeArg {
  torch::jit::Value *scalar, *list;
};

// size_arg_inputs says where an op's size argument and the weight that names
// it are: a conv's groups (input 1 is the weight), aten::group_norm(input,
// num_groups, weight, ...) and aten::layer_norm(input, normalized_shape,
// weight, ...), whose normalized_shape is an int[]. False for other ops.
bool size_arg_inputs(const torch::jit::Node *n, int *arg, int *weight, bool *list) {
  *arg = groups_input_index(n), *weight = 1, *list = false;
  if (n->kind() == c10::aten::group_norm) *arg = 1, *weight = 2;
  if (n->kind() == c10::aten::layer_norm) *arg = 1, *weight = 2, *list = true;
  return *arg >= 0 && static_cast<int>(n->inputs().size()) > std::max(*arg, *weight);
}

// int_list reads a constant int[] input: a constant, or a ListConstruct
// of constants.
bool int_list(torch::jit::Value *v, std::vector<int64_t> *out) {
  if (auto c = torch::jit::toIValue(v)) {
    if (!c->isIntList()) return false;
    *out = c->toIntVector();
    return true;
  }
  if (v->node()->kind() != c10::prim::ListConstruct) return false;
  out->clear();
  for (torch::jit::Value *in : v->node()->inputs()) {
    auto c = torch::jit::toIValue(in);
    if (!c || !c->isInt()) return false;
    out->push_back(c->toInt());
  }
  return true;
}

// A weight that forward reshapes with its filter count written in (weight
// standardisation's w.reshape(1, out_channels, -1), or (out_channels, -1))
// takes its new count when counts names it. Reports whether it rewrote
// node.
bool rewrite_weight_view(torch::jit::Node *node, torch::jit::Value *self,
                         const std::map<std::string, int64_t> &counts) {
  if ((node->kind() != c10::aten::reshape && node->kind() != c10::aten::view) || node->inputs().size() != 2)
    return false;
  auto it = counts.find(gpt::attr_chain(node->input(0), self));
  std::vector<int64_t> dims;
  if (it == counts.end() || !int_list(node->input(1), &dims)) return false;
  size_t at;
  if (dims.size() == 3 && dims[0] == 1 && dims[2] == -1)
    at = 1;
  else if (dims.size() == 2 && dims[1] == -1)
    at = 0;
  else
    return false;
  dims[at] = it->second;
  torch::jit::WithInsertPoint guard(node);
  node->replaceInput(1, node->owningGraph()->insertConstant(dims));
  return true;
}

// Rewrites, in b and its sub-blocks, the size argument of every op whose
// weight chain names a key of sizes: grouped and depthwise convs and group
// norms pruned in whole groups take their new groups count, a LayerNorm
// over pruned channels its new [C], a weight reshape its new filter count
// (counts). Counts the rewrites per weight.
void rewrite_sizes(torch::jit::Block *b, torch::jit::Value *self,
                   const std::map<std::string, SizeArg> &sizes, const std::map<std::string, int64_t> &counts,
                   std::map<std::string, int> *hits) {
  for (torch::jit::Node *node : b->nodes()) {
    for (torch::jit::Block *sub : node->blocks()) rewrite_sizes(sub, self, sizes, counts, hits);
    if (rewrite_weight_view(node, self, counts)) {
      (*hits)[gpt::attr_chain(node->input(0), self)]++;
      continue;
    }
    int arg, weight;
    bool list;
    if (!size_arg_inputs(node, &arg, &weight, &list)) continue;
    auto it = sizes.find(gpt::attr_chain(node->input(weight), self));
    if (it == sizes.end()) continue;
    node->replaceInput(arg, list ? it->second.list : it->second.scalar);
    (*hits)[it->first]++;
  }
}

// A channel count written into the size list of a view or reshape of an
// activation (`x.view(b, self.inter, -1)`, LeNet's `view(-1, 16 * 5 * 5)`)
// or into a split's part size (`torch.split(x, width, 1)`, entry 0) is
// named "@<entry>@<site>" (gpt::site_of) in the sizes of
// gpt_module_prune. split_sizes parts them, collected site by site, from
// the sizes named by weight.
using SiteSizes = std::map<std::string, std::map<int64_t, int64_t>>;

void split_sizes(const std::map<std::string, int64_t> &sizes, std::map<std::string, int64_t> *by_weight,
                 SiteSizes *by_site) {
  for (const auto &kv : sizes) {
    if (kv.first.empty() || kv.first[0] != '@') {
      by_weight->insert(kv);
      continue;
    }
    size_t at = kv.first.find('@', 1);
    if (at == std::string::npos || at == 1)
      throw std::runtime_error("bad size key \"" + kv.first + "\"");
    int64_t entry = std::stoll(kv.first.substr(1, at - 1));
    (*by_site)[kv.first.substr(at + 1)][entry] = kv.second;
  }
}

// Gives node, a sited op, its size argument with the entries of want
// replaced, built next to it; the old one stays for its other users.
void rewrite_site_sizes(torch::jit::Node *node, const std::map<int64_t, int64_t> &want, const std::string &site) {
  torch::jit::Value *list = node->input(1);
  torch::jit::Graph *g = node->owningGraph();
  torch::jit::WithInsertPoint guard(node);
  if (list->type()->kind() == c10::TypeKind::IntType) {  // a split's part size
    if (want.size() != 1 || want.begin()->first != 0)
      throw std::runtime_error("the size at " + site + " is one int, entry 0");
    node->replaceInput(1, g->insertConstant(want.begin()->second));
    return;
  }
  std::vector<int64_t> dims;
  if (torch::jit::toIValue(list) && int_list(list, &dims)) {
    for (const auto &e : want) {
      if (e.first < 0 || e.first >= static_cast<int64_t>(dims.size()))
        throw std::runtime_error("the size list at " + site + " has no entry " + std::to_string(e.first));
      dims[e.first] = e.second;
    }
    node->replaceInput(1, g->insertConstant(dims));
    return;
  }
  if (list->node()->kind() != c10::prim::ListConstruct)
    throw std::runtime_error("the size list at " + site + " is not written out");
  std::vector<torch::jit::Value *> elems(list->node()->inputs().begin(), list->node()->inputs().end());
  for (const auto &e : want) {
    if (e.first < 0 || e.first >= static_cast<int64_t>(elems.size()))
      throw std::runtime_error("the size list at " + site + " has no entry " + std::to_string(e.first));
    elems[e.first] = g->insertConstant(e.second);
  }
  torch::jit::Node *nl = g->insertNode(g->createList(c10::IntType::get(), elems));
  node->replaceInput(1, nl->output());
}

void rewrite_sites(torch::jit::Block *b, const SiteSizes &want, std::map<std::string, int> *hits) {
  for (torch::jit::Node *node : b->nodes()) {
    for (torch::jit::Block *sub : node->blocks()) rewrite_sites(sub, want, hits);
    if (!gpt::sited_kind(node->kind()) || !gpt::sized_arg_written(node)) continue;
    std::string site = gpt::site_of(node);
    auto it = want.find(site);
    if (it == want.end()) continue;
    rewrite_site_sizes(node, it->second, site);
    (*hits)[site]++;
  }
}

// edit_sizes rewrites, in g (the root forward with the calls inlined that
// the edit needs), every op that sizes names, and returns the first weight
// that names no op in g ("" when none).
std::string edit_sizes(std::shared_ptr<torch::jit::Graph> g, const std::map<std::string, int64_t> &weights,
                       const SiteSizes &sites) {
  torch::jit::ConstantPropagation(g);
  torch::jit::Value *self = g->inputs().at(0);
  std::map<std::string, SizeArg> consts;
  {
    torch::jit::WithInsertPoint guard(g->block()->nodes().front());
    for (const auto &kv : weights)
      consts[kv.first] = {g->insertConstant(kv.second),
                          g->insertConstant(std::vector<int64_t>{kv.second})};
  }
  std::map<std::string, int> hits;
  rewrite_sizes(g->block(), self, consts, weights, &hits);
  rewrite_sites(g->block(), sites, &hits);
  for (const auto &kv : sites)
    if (hits[kv.first] != 1)
      throw std::runtime_error(std::to_string(hits[kv.first]) + " views, reshapes or splits at " + kv.first +
                               " in forward, not one");
  for (const auto &kv : weights)
    if (hits[kv.first] == 0) return kv.first;
  return "";
}

// Returns forward with each op named in sizes (by weight) taking its new
// size argument (see rewrite_sizes), and each sited op its new channel
// count (split_sizes); throws when a name matches no op. Instances of one
// module type share their method graphs, so the edit is made in the
// root's forward, with the calls on the way to each named weight inlined,
// where each call site is distinct: a mobilenet_v2's depthwise convs need
// their blocks inlined, not its batch norms and pointwise convs, which
// were most of the whole inlined model (and of the code saved for it).
// Sites name ops by their place in the whole inlined forward, so an edit
// with sites inlines everything, as does one whose weight the partial
// inlining did not reach (a weight handed on in a way it does not follow).
std::shared_ptr<torch::jit::Graph> edit_conv_groups(torch::jit::Graph &forward,
                                                    const std::map<std::string, int64_t> &sizes) {
  std::map<std::string, int64_t> weights;
  SiteSizes sites;
  split_sizes(sizes, &weights, &sites);
  if (sites.empty()) {
    std::set<std::string> names;
    for (const auto &kv : weights) names.insert(kv.first);
    std::shared_ptr<torch::jit::Graph> g = forward.copy();
    gpt::inline_weights(*g, names);
    if (edit_sizes(g, weights, sites).empty()) return g;
  }
  std::shared_ptr<torch::jit::Graph> g = forward.copy();
  gpt::inline_all(*g);
  std::string miss = edit_sizes(g, weights, sites);
  if (!miss.empty())
    throw std::runtime_error("no convolution, group_norm, layer_norm or weight reshape with weight \"" + miss +
                             "\" in forward");
  return g;
}

// A module's clones share its compilation unit, whose tables of types and
// functions are not safe to change from two threads at once; cart slots
// clone, cut and free their copies in parallel. Every change to a unit
// (clone, a forward replaced, a clone's methods removed) holds this lock.
std::mutex unit_mu;

// Makes g the root's forward. A method's executor keeps the optimised copy
// of the graph it was first run with, so an edit to the graph in place
// would not be seen once forward has run; a new function under the same
// name and schema starts with no executor and runs g, exactly what a saved
// copy would run. This replaces the serialise/load round trip (a second
// copy of the whole model) that the edit used to need. The root's class
// type is its own: a clone gets new types (gpt_module_clone).
void replace_forward(torch::jit::Module &m, std::shared_ptr<torch::jit::Graph> g) {
  std::lock_guard<std::mutex> lock(unit_mu);
  torch::jit::GraphFunction &old = forward_function(m);
  c10::QualifiedName name = old.qualname();
  c10::FunctionSchema schema = old.getSchema();
  auto cu = m._ivalue()->compilation_unit();
  m.type()->unsafeRemoveMethod("forward");
  cu->unsafeRemoveMethod(name);
  torch::jit::Function *fresh = cu->create_function(name, std::move(g));
  fresh->setSchema(std::move(schema));
  m.type()->addMethod(fresh);
}

// A function's executors (one per autocast mode) are private to
// GraphFunction, and libtorch offers no call that drops them; its optimised
// graphs it does (clear_optimized_graphs). An explicit instantiation may
// name a private member, and Steal keeps that name as a member pointer: the
// one access to a private member that C++ allows, checked against each
// libtorch's headers when the shim compiles (check-libtorch2 for 2.x), so
// a renamed or retyped member fails the build, never a run.
using Executors = std::array<c10::optional<torch::jit::GraphExecutor>, 4>;
struct ExecutorsOf {
  using type = Executors torch::jit::GraphFunction::*;
};
template <class Tag, typename Tag::type M>
struct Steal {
  friend typename Tag::type member(Tag) { return M; }
};
ExecutorsOf::type member(ExecutorsOf);
template struct Steal<ExecutorsOf, &torch::jit::GraphFunction::executors_>;

// drop_plans frees what running fn left in it: its executors (each with a
// copy of the graph, a plan and the plan's compiled code) and its
// optimised graph. The next call makes them again.
void drop_plans(torch::jit::GraphFunction &fn) {
  (fn.*member(ExecutorsOf{})).fill(c10::nullopt);
  fn.clear_optimized_graphs();
}

// each_class_type calls f once for each class type of m and its
// submodules, in the modules' order (a type that several submodules share,
// once). The caller holds unit_mu when f edits the types.
template <class F>
void each_class_type(const torch::jit::Module &m, F f) {
  std::set<const c10::ClassType *> seen;
  for (const torch::jit::Module &sub : m.modules()) {
    c10::ClassTypePtr t = sub.type();
    if (seen.insert(t.get()).second) f(t);
  }
}

// Module::clone gives the copy new class types, one per module, but
// registers them and their methods in the original's compilation unit,
// which keeps every function it holds (with the executors and optimised
// graphs made when it ran) until the unit itself goes, that is until the
// last module loaded with it is freed. A search clones the model for every
// candidate, and a ResNet-20's clone left 0.43 MB behind (7 MB once run
// with the optimiser on, which gpt::Entry now keeps off). The clone's types are
// made for it alone (a clone of a clone gets new ones again), so when it
// is freed its methods are removed from the type and the unit, which frees
// them; the small type objects stay registered under their mangled names.
// Free functions the code calls belong to the original and are left.
void drop_methods(const torch::jit::Module &m) {
  std::lock_guard<std::mutex> lock(unit_mu);
  auto cu = m._ivalue()->compilation_unit();
  each_class_type(m, [&cu](const c10::ClassTypePtr &t) {
    std::vector<torch::jit::Function *> fns = t->methods();
    for (torch::jit::Function *fn : fns) {
      c10::QualifiedName q = fn->qualname();
      std::string name = fn->name();
      if (cu->find_function(q) != fn) continue;
      t->unsafeRemoveMethod(name);
      cu->unsafeRemoveMethod(q);
    }
  });
}

// cut_copy copies the kept slices of t along each (ascending) dim. Cuts of
// adjacent dims (a conv weight's outputs and inputs) gather in one step into
// a tensor of the final size: a step per dim first allocated the half-cut
// tensor, and those copies, larger than the holes that the freed originals
// had left so far, grew the heap by 16 MB in a resnet50's surgery (9 MB
// now; the bytes are the same).
at::Tensor cut_copy(const at::Tensor &t, const std::vector<std::pair<int64_t, at::Tensor>> &keep) {
  bool adjacent = keep.size() > 1;
  for (size_t i = 1; i < keep.size(); i++) adjacent = adjacent && keep[i].first == keep[i - 1].first + 1;
  if (!adjacent) {
    at::Tensor r = t;
    for (const auto &[dim, index] : keep) r = r.index_select(dim, index);
    return r;
  }
  // Indices broadcast against each other ([n0,1], [1,n1], ...) select the
  // cross product; adjacent advanced indices keep their place in the result.
  c10::List<c10::optional<at::Tensor>> idx;
  for (int64_t d = 0; d < keep.front().first; d++) idx.push_back(c10::nullopt);
  for (size_t i = 0; i < keep.size(); i++) {
    std::vector<int64_t> shape(keep.size(), 1);
    shape[i] = -1;
    idx.push_back(keep[i].second.view(shape));
  }
  return at::index(t, idx).contiguous();
}

// shrink_block gives the end of a storage's block, past its byte count,
// back to malloc: after an in-place cut the kept bytes are at the front,
// and the rest (densenet121: 15 MB of its 33 MB at P=0.5) stayed in the
// block until the tensor went. glibc's realloc shrinks a heap block where
// it lies; should it move one (a mapped block), the bytes go to a new
// block from libtorch's allocator, aligned as libtorch wants. Only blocks
// from libtorch's default CPU allocator, whose deleter is free's.
void shrink_block(c10::StorageImpl *s) {
  const size_t n = s->nbytes();
  void *p = s->data_ptr().get();
  if (n == 0 || p == nullptr || p != s->data_ptr().get_context() ||
      s->data_ptr().get_deleter() != c10::GetCPUAllocator()->raw_deleter())
    return;
  void *q = std::realloc(p, n);
  if (q == nullptr) return;  // the block is as it was
  if (q == p) return;
  // realloc freed p: the old DataPtr must not free it again.
  at::DataPtr fresh = c10::GetCPUAllocator()->allocate(n);
  std::memcpy(fresh.get(), q, n);
  std::free(q);
  s->set_data_ptr(std::move(fresh)).release_context();
}

// tensor_attr is the tensor at dotted name in m, with the module that owns
// the attribute and its name there; it throws, naming it, when there is
// none.
at::Tensor tensor_attr(const torch::jit::Module &m, const char *name, torch::jit::Module *owner, std::string *leaf) {
  *owner = gpt::owner_of(m, name, leaf);
  if (!owner->hasattr(*leaf)) throw std::runtime_error(std::string("no tensor \"") + name + "\" in the model");
  c10::IValue v = owner->attr(*leaf);
  if (!v.isTensor()) throw std::runtime_error(std::string("\"") + name + "\" is not a tensor");
  return v.toTensor();
}

// gather_kept writes the kept part of a contiguous tensor of the given
// sizes at src to dst, contiguous, in one pass: keep lists the kept
// indices of some dims (ascending dims), the other dims keep everything.
void gather_kept(const char *src, char *dst, const std::vector<int64_t> &sizes,
                 const std::vector<std::pair<int64_t, at::Tensor>> &keep, size_t elem) {
  const int64_t last = keep.empty() ? -1 : keep.back().first;
  std::vector<const int64_t *> idx(static_cast<size_t>(last) + 1, nullptr);
  std::vector<int64_t> count(static_cast<size_t>(last) + 1), stride(static_cast<size_t>(last) + 1);
  for (const auto &[dim, index] : keep) idx[dim] = index.data_ptr<int64_t>();
  // A run: what lies past the last dim cut, copied whole.
  size_t run = elem;
  for (size_t d = static_cast<size_t>(last) + 1; d < sizes.size(); d++) run *= static_cast<size_t>(sizes[d]);
  int64_t step = static_cast<int64_t>(run);
  for (int64_t d = last; d >= 0; d--) {
    stride[d] = step;
    step *= sizes[d];
    count[d] = sizes[d];
  }
  for (const auto &[dim, index] : keep) count[dim] = index.numel();
  // Odometer over the kept positions of dims 0..last, in output order.
  std::vector<int64_t> pos(static_cast<size_t>(last) + 1, 0);
  for (int64_t d = 0; d <= last; d++)
    if (count[d] == 0) return;
  if (last < 0) {  // nothing cut: one run
    std::memcpy(dst, src, run);
    return;
  }
  for (;;) {
    int64_t from = 0;
    for (int64_t d = 0; d <= last; d++) from += (idx[d] != nullptr ? idx[d][pos[d]] : pos[d]) * stride[d];
    std::memcpy(dst, src + from, run);
    dst += run;
    int64_t d = last;
    for (; d >= 0 && ++pos[d] == count[d]; d--) pos[d] = 0;
    if (d < 0) return;
  }
}

// cut_in_place cuts t by moving its kept slices to the front of its own
// storage and shrinking the tensor to them, so that surgery allocates no
// new tensor: copies left the old tensors' freed blocks as holes that the
// smaller copies only partly reused, and a resnet50's one-shot cut grew its
// heap by 5 MB more than this does. The values are those of cut_copy, and
// the storage's byte count is set to the kept bytes, which is what the
// archive writes; the block's end goes back to malloc (shrink_block). It
// applies only where no one else can see the change: a contiguous CPU
// tensor at offset 0, alone on its storage, with no grad, held by the
// module and the caller only (uses is what the caller knows of). Otherwise
// it returns false and changes nothing. src, when not null, holds t's bytes
// (they waited in the model file, and the block's pages are empty): the
// kept slices come from there, and only the block's front is written.
bool cut_in_place(at::Tensor &t, const std::vector<std::pair<int64_t, at::Tensor>> &keep, size_t uses,
                  const char *src) {
  if (!t.device().is_cpu() || !t.is_contiguous() || t.storage_offset() != 0 || t.is_sparse()) return false;
  if (t.use_count() != uses || t.storage().use_count() != 1) return false;
  if (t.grad().defined() || t.grad_fn() || !t.unsafeGetTensorImpl()->allow_tensor_metadata_change()) return false;
  if (t.storage().nbytes() != static_cast<size_t>(t.numel()) * t.element_size()) return false;
  std::vector<int64_t> sizes = t.sizes().vec();
  char *base = static_cast<char *>(t.data_ptr());
  if (src != nullptr) {
    // From another buffer, every dim at once: the block's pages past the
    // kept bytes are never written (a dim at a time, the first pass would
    // fill more of them than the cut keeps).
    gather_kept(src, base, sizes, keep, t.element_size());
    for (const auto &[dim, index] : keep) sizes[dim] = index.numel();
  } else {
    for (const auto &[dim, index] : keep) {
      int64_t outer = 1, inner = static_cast<int64_t>(t.element_size());
      for (int64_t d = 0; d < dim; d++) outer *= sizes[d];
      for (int64_t d = dim + 1; d < static_cast<int64_t>(sizes.size()); d++) inner *= sizes[d];
      const int64_t n = sizes[dim], kept = index.numel();
      const int64_t *idx = index.data_ptr<int64_t>();
      // Slice (o, j) goes from o*n + idx[j] to o*kept + j. Kept indices
      // ascend, so every slice moves towards the front and lands before any
      // slice still to be read: moving them in order is safe.
      for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < kept; j++) {
          int64_t from = o * n + idx[j], to = o * kept + j;
          if (from != to) std::memmove(base + to * inner, base + from * inner, inner);
        }
      sizes[dim] = kept;
    }
  }
  t.unsafeGetTensorImpl()->set_sizes_contiguous(sizes);
  t.storage().unsafeGetStorageImpl()->set_nbytes(static_cast<size_t>(t.numel()) * t.element_size());
  shrink_block(t.storage().unsafeGetStorageImpl());
  return true;
}

// clone_types copies m, tensors included, into class types and methods of
// its own, registered in m's compilation unit (Module::clone, under the
// lock that guards the unit); drop_methods removes them again.
torch::jit::Module clone_types(const torch::jit::Module &m) {
  torch::NoGradGuard no_grad;
  std::lock_guard<std::mutex> lock(unit_mu);
  return m.clone();
}

}  // namespace

// The blocks go with the module: nothing waiting in the file is read back.
gpt_module_s::~gpt_module_s() {
  if (parked) parked->forget();
}

namespace gpt {

Unrun::~Unrun() {
  try {
    each_class_type(m_, [](const c10::ClassTypePtr &t) {
      for (torch::jit::Function *fn : t->methods())
        if (auto *gf = torch::jit::tryToGraphFunction(*fn)) drop_plans(*gf);
    });
  } catch (...) {
    // Walking the modules can only run out of memory; the plans left stay
    // until the module goes.
  }
}

}  // namespace gpt

extern "C" {

gpt_err gpt_module_load(const char *path, const char *device, gpt_module *out) {
  GPT_TRY
  auto dev = gpt::parse_device(device);
  std::shared_ptr<gpt::Origin> origin;
  torch::jit::Module m = gpt::load_module(std::string(path), dev, &origin);
  m.eval();
  *out = make(std::move(m), dev, 0);
  (*out)->origin = std::move(origin);
  GPT_CATCH
}

gpt_err gpt_module_load_bytes(const void *data, size_t n, const char *device,
                              gpt_module *out) {
  GPT_TRY
  auto dev = gpt::parse_device(device);
  std::istringstream in(std::string(static_cast<const char *>(data), n));
  torch::jit::Module m = torch::jit::load(in, dev);
  m.eval();
  *out = make(std::move(m), dev, 0);
  GPT_CATCH
}

// Writes the archive at path as it is: the caller (Go's atomicfile) gives a
// temporary path and renames it, so the atomic-replace policy lives in one
// place.
gpt_err gpt_module_save(gpt_module h, const char *path) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  gpt::unpark(h);
  h->m.save(std::string(path));
  GPT_CATCH
}

gpt_err gpt_module_save_bytes(gpt_module h, void **data, size_t *n) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  gpt::unpark(h);
  std::ostringstream ss;
  h->m.save(ss);
  std::string s = ss.str();
  void *p = std::malloc(s.size() > 0 ? s.size() : 1);
  if (p == nullptr) return gpt::dup("save_bytes: out of memory");
  std::memcpy(p, s.data(), s.size());
  *data = p;
  *n = s.size();
  GPT_CATCH
}

gpt_err gpt_module_clone(gpt_module h, gpt_module *out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  gpt::Entry entry(h);
  gpt::unpark(h);
  // Module::clone copies every tensor (tensors that alias stay aliased in
  // the copy) and gives the copy its own class types and method graphs, so
  // surgery on one never shows through in the other; unlike a serialise/
  // load round trip it parses nothing. Under no_grad the copied parameters
  // are leaves rather than outputs of a clone op; their requires_grad is
  // then set back from the original's.
  torch::jit::Module m = clone_types(h->m);
  std::vector<torch::jit::NameTensor> src, dst;
  for (const auto &p : h->m.named_parameters(/*recurse=*/true)) src.push_back(p);
  for (const auto &p : m.named_parameters(/*recurse=*/true)) dst.push_back(p);
  if (src.size() != dst.size()) return gpt::dup("clone: the copy has a different parameter count");
  for (size_t i = 0; i < dst.size(); i++) {
    if (dst[i].name != src[i].name)
      return gpt::dup("clone: parameter order differs at \"" + dst[i].name + "\"");
    at::Tensor p = dst[i].value;
    if (p.requires_grad() != src[i].value.requires_grad()) p.requires_grad_(src[i].value.requires_grad());
  }
  m.train(h->m.is_training());
  *out = make(std::move(m), h->device, h->threads);
  (*out)->cloned = true;
  GPT_CATCH
}

gpt_err gpt_module_free(gpt_module h) {
  if (h == nullptr) return nullptr;
  GPT_TRY
  if (h->cloned) drop_methods(h->m);
  delete h;
  gpt::live_modules--;
  GPT_CATCH
}

gpt_err gpt_module_unit_functions(gpt_module h, int64_t *out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  int64_t n = 0;
  // Removed functions leave empty entries behind.
  for (const torch::jit::Function *fn : h->m._ivalue()->compilation_unit()->get_functions()) n += fn != nullptr;
  *out = n;
  GPT_CATCH
}

gpt_err gpt_module_offloaded(gpt_module h, int64_t *out) {
  GPT_CHECK_HANDLE(h, "module")
  *out = h->parked ? static_cast<int64_t>(h->parked->bytes()) : 0;
  return nullptr;
}

gpt_err gpt_live_modules(int64_t *out) {
  *out = gpt::live_modules.load();
  return nullptr;
}

gpt_err gpt_module_has_method(gpt_module h, const char *name, int *out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  *out = h->m.find_method(name).has_value() ? 1 : 0;
  GPT_CATCH
}

namespace {

// count_bn counts the batch norms b runs, through every call: each call
// site of a function counts, as in the inlined graph, without the cost of
// building one (a densenet121's whole inlined forward is 10 MB, and the
// heap kept it after it went).
void count_bn(torch::jit::Block *b, int *fixed, int *total, int depth) {
  if (depth > 64) return;  // recursion TorchScript does not allow anyway
  for (torch::jit::Node *node : b->nodes()) {
    for (torch::jit::Block *sub : node->blocks()) count_bn(sub, fixed, total, depth);
    if (torch::jit::GraphFunction *fn = gpt::called(node)) {
      fn->ensure_defined();
      count_bn(fn->graph()->block(), fixed, total, depth + 1);
      continue;
    }
    if (node->kind() != c10::Symbol::aten("batch_norm") || node->inputs().size() < 6) continue;
    (*total)++;
    if (node->input(5)->node()->kind() == c10::prim::Constant) (*fixed)++;
  }
}

}  // namespace

gpt_err gpt_module_bn_modes(gpt_module h, int *fixed, int *total) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  *fixed = 0;
  *total = 0;
  if (!h->m.find_method("forward").has_value()) return nullptr;
  count_bn(forward_function(h->m).graph()->block(), fixed, total, 0);
  GPT_CATCH
}

gpt_err gpt_module_train(gpt_module h, int on) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  gpt::unpark(h);
  h->m.train(on != 0);
  GPT_CATCH
}

gpt_err gpt_module_set_threads(gpt_module h, int n) {
  GPT_CHECK_HANDLE(h, "module")
  if (n < 0) return gpt::dup("thread count must not be negative");
  h->threads = n;
  return nullptr;
}

gpt_err gpt_module_forward(gpt_module h, const gpt_tensor *inputs, int n,
                           int no_grad, gpt_tensor *out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  *out = gpt::wrap(gpt::select_output(gpt::run_forward(h, inputs, n, no_grad)));
  GPT_CATCH
}

gpt_err gpt_module_check_forward(gpt_module h, const gpt_tensor *inputs, int n, int pass,
                                 int *meta) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  if (meta != nullptr) *meta = 0;
  if (pass != GPT_PASS_REAL) {
    std::string why = gpt::meta_pass(h, gpt::tensors_of(inputs, n, "forward"), [h](const std::vector<at::Tensor> &in) {
      at::NoGradGuard ng;
      // The callees' executors go with a copy; a forward that calls
      // nothing (a groups edit with sites inlines everything) leaves
      // none, and copying it would only cost its graph.
      if (!makes_calls(forward_function(h->m).graph()->block())) {
        run_uncached(h->m, in);
        return;
      }
      gpt::Unrun unrun(h->m);
      run_uncached(h->m, in);
    });
    if (why.empty()) {
      if (meta != nullptr) *meta = 1;
      return nullptr;
    }
    if (pass == GPT_PASS_META) return gpt::dup("meta pass: " + why);
  }
  gpt::Entry entry(h);
  gpt::unpark(h);
  at::NoGradGuard ng;
  run_uncached(h->m, gpt::tensors_of(inputs, n, "forward"));
  GPT_CATCH
}

gpt_err gpt_module_names(gpt_module h, int buffers, char **out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  std::string s;
  if (buffers) {
    for (const auto &p : h->m.named_buffers(true)) {
      s += p.name;
      s += '\n';
    }
  } else {
    for (const auto &p : h->m.named_parameters(true)) {
      s += p.name;
      s += '\n';
    }
  }
  *out = gpt::dup(s);
  GPT_CATCH
}

gpt_err gpt_module_object_types(gpt_module h, char **out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  std::set<std::string> names;
  gpt::each_slot(h->m, [&names](const auto &, size_t, const c10::IValue &v) {
    if (!v.isObject()) return;
    auto cls = v.toObjectRef().type();
    if (!cls->is_module() && cls->name()) names.insert(cls->name()->qualifiedName());
  });
  std::string s;
  for (const std::string &n : names) {
    s += n;
    s += '\n';
  }
  *out = gpt::dup(s);
  GPT_CATCH
}

gpt_err gpt_module_get(gpt_module h, const char *name, gpt_tensor *out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  torch::jit::Module owner;
  std::string leaf;
  at::Tensor t = tensor_attr(h->m, name, &owner, &leaf);
  // The handle shares the tensor: its bytes come back first.
  if (h->parked) h->parked->restore_one(t.storage().unsafeGetStorageImpl());
  *out = gpt::wrap(t);
  GPT_CATCH
}

gpt_err gpt_module_read(gpt_module h, const char *name, gpt_tensor *out) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  torch::jit::Module owner;
  std::string leaf;
  at::Tensor t = tensor_attr(h->m, name, &owner, &leaf);
  if (h->parked && h->parked->parked(t.storage().unsafeGetStorageImpl())) {
    // A copy from the file, laid out as the tensor is on its storage; the
    // block's pages stay out, and the copy's go when it does.
    const size_t n = t.storage().nbytes();
    gpt::Pages bytes;
    bytes.reset(n);
    h->parked->read(t.storage().unsafeGetStorageImpl(), bytes.data());
    char *p = bytes.data();
    at::Tensor copy = at::from_blob(
        p, {static_cast<int64_t>(n)}, [n](void *q) { gpt::Pages::unmap(q, n); }, t.options().dtype(at::kByte));
    bytes.release();
    at::Tensor view = at::empty({0}, t.options());
    view.set_(copy.storage(), t.storage_offset(), t.sizes(), t.strides());
    *out = gpt::wrap(view);
    return nullptr;
  }
  *out = gpt::wrap(t);
  GPT_CATCH
}

gpt_err gpt_module_set(gpt_module h, const char *name, gpt_tensor t) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_CHECK_HANDLE(t, "tensor")
  GPT_TRY
  gpt::unpark(h);
  torch::jit::Module owner;
  std::string leaf;
  at::Tensor old = tensor_attr(h->m, name, &owner, &leaf);
  at::Tensor nt = t->t.detach().clone().to(old.device());
  nt.set_requires_grad(old.requires_grad());
  owner.setattr(leaf, nt);
  GPT_CATCH
}

gpt_err gpt_module_prune(gpt_module h, int ntensors, const char **names,
                         const int64_t *off, const int64_t *spec, int nconvs,
                         const char **conv_names, const int64_t *groups, int *changed,
                         int *in_place) {
  GPT_CHECK_HANDLE(h, "module")
  if (changed != nullptr) *changed = 0;
  if (in_place != nullptr) *in_place = 0;
  GPT_TRY
  at::NoGradGuard ng;
  // Phase 1 changes nothing: it checks every slice and every groups entry,
  // and makes the edited forward graph on a copy. Phase 2 then cuts one
  // tensor at a time, each replacing its original at once, so the module
  // never holds both the old and the new weights (a model's size more
  // memory at the peak). Phase 2 can fail only where memory runs out or
  // the model file changed under the run (a tensor waiting in it no longer
  // reads back), and *changed then tells the caller that the module is half
  // cut.
  if (ntensors < 0 || nconvs < 0) return gpt::dup("prune: negative count");
  if (ntensors > 0 && (names == nullptr || off == nullptr || spec == nullptr))
    return gpt::dup("prune: NULL names or spec");
  if (nconvs > 0 && (conv_names == nullptr || groups == nullptr))
    return gpt::dup("prune: NULL conv names or groups");
  if (ntensors > 0 && off[0] != 0) return gpt::dup("prune: spec offsets must start at 0");
  struct Edit {
    torch::jit::Module owner;
    std::string leaf;
    std::vector<std::pair<int64_t, at::Tensor>> keep;  // dim, kept indices
  };
  std::vector<Edit> edits;
  edits.reserve(ntensors);
  std::set<std::string> seen;
  for (int i = 0; i < ntensors; i++) {
    if (names[i] == nullptr) return gpt::dup("prune: NULL tensor name");
    std::string name(names[i]);
    if (!seen.insert(name).second) return gpt::dup("prune: \"" + name + "\" is listed twice");
    if (off[i + 1] < off[i]) return gpt::dup("prune: spec offsets go backwards at \"" + name + "\"");
    Edit e;
    e.owner = gpt::owner_of(h->m, name, &e.leaf);
    if (!e.owner.hasattr(e.leaf)) return gpt::dup("prune: no tensor \"" + name + "\" in the model");
    c10::IValue old = e.owner.attr(e.leaf);
    if (!old.isTensor()) return gpt::dup("prune: \"" + name + "\" is not a tensor");
    const at::Tensor &t = old.toTensor();
    int64_t last_dim = -1;
    for (int64_t k = off[i]; k < off[i + 1];) {
      if (k + 2 > off[i + 1]) return gpt::dup("prune: truncated spec for \"" + name + "\"");
      int64_t dim = spec[k], count = spec[k + 1];
      if (dim < 0 || dim >= t.dim())
        return gpt::dup("prune: \"" + name + "\" has no dim " + std::to_string(dim));
      if (dim <= last_dim)
        return gpt::dup("prune: dims of \"" + name + "\" are not ascending and unique");
      last_dim = dim;
      if (count < 0 || count > off[i + 1] - k - 2)
        return gpt::dup("prune: bad index count for \"" + name + "\"");
      const int64_t *idx = spec + k + 2;
      for (int64_t j = 0; j < count; j++) {
        if (idx[j] < 0 || idx[j] >= t.size(dim))
          return gpt::dup("prune: index " + std::to_string(idx[j]) + " out of range for \"" +
                          name + "\" dim " + std::to_string(dim) + " (size " +
                          std::to_string(t.size(dim)) + ")");
        if (j > 0 && idx[j] <= idx[j - 1])
          return gpt::dup("prune: kept indices of \"" + name + "\" dim " + std::to_string(dim) +
                          " are not ascending and unique");
      }
      auto index = at::empty({count}, at::kLong);
      if (count > 0) std::memcpy(index.data_ptr(), idx, count * sizeof(int64_t));
      e.keep.emplace_back(dim, index.to(t.device()));
      k += 2 + count;
    }
    // A tensor listed with no dims keeps every element: nothing to do.
    if (!e.keep.empty()) edits.push_back(std::move(e));
  }
  std::map<std::string, int64_t> new_groups;
  for (int j = 0; j < nconvs; j++) {
    if (conv_names[j] == nullptr) return gpt::dup("prune: NULL conv name");
    if (groups[j] < 1)
      return gpt::dup(std::string("prune: groups for \"") + conv_names[j] + "\" must be positive");
    if (!new_groups.emplace(conv_names[j], groups[j]).second)
      return gpt::dup(std::string("prune: conv \"") + conv_names[j] + "\" is listed twice");
  }
  std::shared_ptr<torch::jit::Graph> edited;
  if (!new_groups.empty()) {
    edited = edit_conv_groups(*forward_function(h->m).graph(), new_groups);
  }

  // Phase 2.
  for (auto &e : edits) {
    at::Tensor ot = e.owner.attr(e.leaf).toTensor();
    // A tensor whose bytes wait in the file is cut from them: only the kept
    // bytes are written to its block. orig holds them for this tensor only:
    // one buffer reused for the next kept a classifier's 5 MB resident
    // under the whole cut.
    gpt::Pages orig;
    bool parked = h->parked && h->parked->take(ot.storage().unsafeGetStorageImpl(), &orig);
    // The module's attribute and ot are its two references.
    if (cut_in_place(ot, e.keep, 2, parked ? orig.data() : nullptr)) {
      if (changed != nullptr) *changed = 1;
      if (in_place != nullptr) (*in_place)++;
      continue;
    }
    if (parked) std::memcpy(ot.storage().data_ptr().get(), orig.data(), ot.storage().nbytes());
    at::Tensor t = cut_copy(ot.detach(), e.keep);
    t.set_requires_grad(ot.requires_grad());
    ot = at::Tensor();
    e.owner.setattr(e.leaf, t);
    if (changed != nullptr) *changed = 1;
  }
  if (edited) {
    if (changed != nullptr) *changed = 1;
    replace_forward(h->m, edited);
    h->nhwc = -1;
  }
  GPT_CATCH
}

}  // extern "C"
