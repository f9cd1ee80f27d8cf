// ir.cc: exports the executed forward pass as "gopruner-ir/1" JSON.
//
// The module runs once under libtorch's tracer with itself passed as `self`,
// which records a flat aten graph in which parameters are prim::GetAttr
// chains from self (their dotted names) and every value has the concrete
// shape it had in this run, whatever control flow the scripted code took.
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/csrc/jit/runtime/interpreter.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "internal.h"

namespace gpt {

void json_str(std::ostringstream &o, const std::string &s) {
  o << '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': o << "\\\""; break;
      case '\\': o << "\\\\"; break;
      case '\n': o << "\\n"; break;
      case '\r': o << "\\r"; break;
      case '\t': o << "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o << buf;
        } else {
          o << c;
        }
    }
  }
  o << '"';
}

// range_key names a source range by its source (file name, when the
// archive gave one, and length) and its offsets in it: the same in every
// process that loads the same archive.
std::string range_key(const torch::jit::SourceRange &r) {
  std::ostringstream o;
  if (const auto &src = r.source()) o << src->filename().value_or("") << "#" << src->size();
  o << ":" << r.start() << "-" << r.end();
  return o.str();
}

bool sited_kind(c10::Symbol k) {
  return k == c10::aten::view || k == c10::aten::reshape || k == c10::aten::split;
}

bool sized_arg_written(const torch::jit::Node *n) {
  if (n->kind() == c10::aten::split)  // split(x, int size, int dim): any int will do
    return n->inputs().size() == 3 && n->input(1)->type()->kind() == c10::TypeKind::IntType;
  return n->inputs().size() == 2 && (torch::jit::toIValue(n->input(1)) ||
                                     n->input(1)->node()->kind() == c10::prim::ListConstruct);
}

std::string site_of(const torch::jit::Node *n) {
  std::string key;
  if (auto cs = n->callstack())
    for (const auto &e : (*cs)->vec()) key += range_key(std::get<1>(e)) + ";";
  return key + range_key(n->sourceRange());
}

}  // namespace gpt

namespace {

using gpt::json_str;
using torch::jit::Node;
using torch::jit::Value;

void json_double(std::ostringstream &o, double d) {
  if (std::isnan(d) || std::isinf(d)) {
    o << 0;  // JSON has no NaN/Inf; such constants never matter to analysis
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  o << buf;
}

std::string kind_of(const c10::TypePtr &t) {
  using c10::TypeKind;
  switch (t->kind()) {
    case TypeKind::TensorType: return "tensor";
    case TypeKind::IntType: return "int";
    case TypeKind::FloatType: return "float";
    case TypeKind::BoolType: return "bool";
    case TypeKind::NoneType: return "none";
    case TypeKind::StringType: return "str";
    case TypeKind::ListType: {
      auto e = t->expectRef<c10::ListType>().getElementType();
      switch (e->kind()) {
        case TypeKind::IntType: return "int[]";
        case TypeKind::FloatType: return "float[]";
        case TypeKind::BoolType: return "bool[]";
        case TypeKind::TensorType: return "tensor[]";
        default: return "other";
      }
    }
    default: return "other";
  }
}

std::string dtype_name(c10::ScalarType s) {
  switch (s) {
    case at::kFloat: return "float";
    case at::kDouble: return "double";
    case at::kHalf: return "half";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "long";
    case at::kInt: return "int";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(s);
  }
}

// Where the trace stamps an op's site (stamp_site, below).
const c10::Symbol kSiteAttr = c10::Symbol::attr("gopruner_site");

struct Exporter {
  std::shared_ptr<torch::jit::Graph> g;
  Value *self = nullptr;
  std::map<Value *, std::string> params;  // GetAttr chains -> dotted name
  std::set<Value *> emitted;
  // sites are the stamped sites that name one op in the trace and one in
  // the code: the only ones surgery can find again.
  std::set<std::string> sites;
  std::ostringstream vals;
  bool first_val = true;

  std::string chain(Value *v) { return gpt::attr_chain(v, self); }

  void value(Value *v) {
    if (!emitted.insert(v).second) return;
    if (!first_val) vals << ",";
    first_val = false;
    vals << "\n{\"id\":" << v->unique() << ",\"kind\":";
    std::string kind = kind_of(v->type());
    json_str(vals, kind);
    if (auto tt = v->type()->cast<c10::TensorType>()) {
      auto sizes = tt->sizes().concrete_sizes();
      if (sizes) {
        vals << ",\"shape\":[";
        for (size_t i = 0; i < sizes->size(); i++) vals << (i ? "," : "") << (*sizes)[i];
        vals << "]";
      }
      if (tt->scalarType()) {
        vals << ",\"dtype\":";
        json_str(vals, dtype_name(*tt->scalarType()));
      }
    }
    Node *n = v->node();
    if (n->kind() == c10::prim::GetAttr) {
      std::string name = chain(v);
      if (!name.empty()) {
        vals << ",\"param\":";
        json_str(vals, name);
      }
    } else if (n->kind() == c10::prim::Constant) {
      auto iv = torch::jit::toIValue(v);
      if (iv) {
        if (iv->isInt()) vals << ",\"const\":true,\"int\":" << iv->toInt();
        else if (iv->isBool()) vals << ",\"const\":true,\"bool\":" << (iv->toBool() ? "true" : "false");
        else if (iv->isDouble()) { vals << ",\"const\":true,\"float\":"; json_double(vals, iv->toDouble()); }
        else if (iv->isString()) { vals << ",\"const\":true,\"str\":"; json_str(vals, iv->toStringRef()); }
        else if (iv->isIntList()) {
          vals << ",\"const\":true,\"ints\":[";
          auto l = iv->toIntVector();
          for (size_t i = 0; i < l.size(); i++) vals << (i ? "," : "") << l[i];
          vals << "]";
        } else if (iv->isDoubleList()) {
          vals << ",\"const\":true,\"floats\":[";
          auto l = iv->toDoubleVector();
          for (size_t i = 0; i < l.size(); i++) { if (i) vals << ","; json_double(vals, l[i]); }
          vals << "]";
        } else if (iv->isNone()) {
          vals << ",\"const\":true";
        }
      }
    }
    vals << "}";
  }

  static bool hidden(Node *n) {
    return n->kind() == c10::prim::Constant || n->kind() == c10::prim::GetAttr;
  }

  std::string run(const torch::jit::Module &m, const std::string &output_info) {
    std::ostringstream ops;
    bool first_op = true;
    for (Node *n : g->nodes()) {
      if (hidden(n)) continue;
      std::string scope;
      for (Value *in : n->inputs()) {
        value(in);
        if (scope.empty() && in->node()->kind() == c10::prim::GetAttr &&
            in->type()->cast<c10::TensorType>()) {
          std::string name = chain(in);
          auto dot = name.rfind('.');
          if (dot != std::string::npos) scope = name.substr(0, dot);
        }
      }
      for (Value *out : n->outputs()) value(out);
      if (!first_op) ops << ",";
      first_op = false;
      ops << "\n{\"kind\":";
      json_str(ops, n->kind().toQualString());
      ops << ",\"inputs\":[";
      for (size_t i = 0; i < n->inputs().size(); i++) ops << (i ? "," : "") << n->input(i)->unique();
      ops << "],\"outputs\":[";
      for (size_t i = 0; i < n->outputs().size(); i++) ops << (i ? "," : "") << n->output(i)->unique();
      ops << "]";
      if (!scope.empty()) {
        ops << ",\"scope\":";
        json_str(ops, scope);
      }
      if (n->hasAttribute(kSiteAttr) && sites.count(n->s(kSiteAttr))) {
        ops << ",\"site\":";
        json_str(ops, n->s(kSiteAttr));
      }
      ops << "}";
    }
    std::ostringstream ins, outs;
    bool first = true;
    for (size_t i = 1; i < g->inputs().size(); i++) {  // input 0 is self
      value(g->inputs()[i]);
      ins << (first ? "" : ",") << g->inputs()[i]->unique();
      first = false;
    }
    first = true;
    for (Value *v : g->outputs()) {
      value(v);
      outs << (first ? "" : ",") << v->unique();
      first = false;
    }
    std::ostringstream ps;
    first = true;
    for (const auto &p : m.named_parameters(true)) {
      ps << (first ? "" : ",") << "\n";
      first = false;
      json_str(ps, p.name);
      ps << ":{\"shape\":[";
      for (int64_t i = 0; i < p.value.dim(); i++) ps << (i ? "," : "") << p.value.size(i);
      ps << "]}";
    }
    for (const auto &p : m.named_buffers(true)) {
      ps << (first ? "" : ",") << "\n";
      first = false;
      json_str(ps, p.name);
      ps << ":{\"shape\":[";
      for (int64_t i = 0; i < p.value.dim(); i++) ps << (i ? "," : "") << p.value.size(i);
      ps << "],\"buffer\":true}";
    }
    std::ostringstream o;
    o << "{\"format\":\"gopruner-ir/1\",\"inputs\":[" << ins.str() << "],\"outputs\":["
      << outs.str() << "],\n\"output\":" << output_info << ",\n\"values\":[" << vals.str() << "],\n\"ops\":[" << ops.str()
      << "],\n\"params\":{" << ps.str() << "}}\n";
    return o.str();
  }
};

const c10::Symbol kKeepAttr = c10::Symbol::attr("gopruner_keep");

// The trace stamps each recorded op of a sited kind with the interpreter's
// call stack at that moment: the source ranges of the calls that lead to
// the op and of the op itself, as gpt::site_of reads them off a node of
// the inlined forward. A size the analysis must follow (a view's channel
// count written in the code) can then be found and rewritten there.
thread_local bool stamping = false;

void stamp_site(Node *n) {
  if (!stamping || !gpt::sited_kind(n->kind())) return;
  std::string key;
  // The interpreter lists the op's own range first and the outermost call
  // last; a site lists them the other way round, as an inlined callstack
  // does.
  for (const auto &e : torch::jit::currentCallstack()) key = gpt::range_key(e.range) + (key.empty() ? "" : ";") + key;
  if (!key.empty()) n->s_(kSiteAttr, key);
}

// Stamping holds for one trace on this thread.
struct Stamping {
  Stamping() {
    static std::once_flag once;
    std::call_once(once, [] { torch::jit::tracer::setRecordSourceLocation(stamp_site); });
    stamping = true;
  }
  ~Stamping() { stamping = false; }
};

// code_sites counts the ops of sited kinds in m's inlined forward by site
// (an op whose size list surgery could not rewrite counts twice).
std::map<std::string, int> code_sites(const torch::jit::Module &m) {
  std::map<std::string, int> out;
  auto g = torch::jit::toGraphFunction(m.get_method("forward").function()).graph()->copy();
  gpt::inline_all(*g);
  std::vector<torch::jit::Block *> todo{g->block()};
  while (!todo.empty()) {
    torch::jit::Block *b = todo.back();
    todo.pop_back();
    for (Node *n : b->nodes()) {
      for (torch::jit::Block *sub : n->blocks()) todo.push_back(sub);
      if (!gpt::sited_kind(n->kind())) continue;
      // Surgery can rewrite a size list only where the code writes it out;
      // a list computed whole (`y.view(x.size())`) makes the site unusable.
      out[gpt::site_of(n)] += gpt::sized_arg_written(n) ? 1 : 2;
    }
  }
  return out;
}

// keep_dead ties every recorded tensor op whose results nothing reads to a
// side-effecting node, so that the tracer's clean-up keeps it. Such an op
// still runs in the saved model (a block's residual that the caller drops,
// a head whose output goes unused): without it in the graph, surgery would
// cut the channels it reads and leave its weight whole.
void keep_dead(torch::jit::Graph &g) {
  std::vector<Value *> dead;
  for (Node *n : g.nodes()) {
    if (n->kind() == c10::prim::Constant || n->outputs().empty()) continue;
    // Scalars traced as 0-dim tensors (a traced `x.size(1) // 2`) carry
    // no channels.
    bool unread = true, tensor = false;
    for (Value *o : n->outputs()) {
      unread = unread && !o->hasUses();
      auto tt = o->type()->cast<c10::TensorType>();
      tensor = tensor || (tt && tt->dim().value_or(1) > 0);
    }
    if (unread && tensor) dead.push_back(n->output(0));
  }
  if (dead.empty()) return;
  Node *k = g.insertNode(g.create(c10::prim::Print, dead, 0));
  k->s_(kKeepAttr, "dead");
}

// drop_keep removes keep_dead's node once the clean-up has run.
void drop_keep(torch::jit::Graph &g) {
  for (auto it = g.nodes().begin(); it != g.nodes().end();) {
    Node *n = *it;
    ++it;
    if (n->kind() == c10::prim::Print && n->hasAttribute(kKeepAttr)) n->destroy();
  }
}

// Traces forward on in and exports the graph; in and h's tensors are both
// real or both meta (gpt::meta_pass).
std::string export_ir(gpt_module_s *h, const std::vector<at::Tensor> &in, bool train, bool drop_plans) {
  torch::jit::Stack stack(in.begin(), in.end());
  bool was_training = h->m.is_training();
  h->m.train(train);
  // The shape-only pass drops the plans the trace leaves (Unrun), before
  // the export's own work.
  std::optional<gpt::Unrun> unrun;
  torch::jit::Module &mod = h->m;
  std::shared_ptr<torch::jit::tracer::TracingState> state;
  c10::IValue result;
  std::vector<gpt::OutputLeaf> leaves;
  try {
    at::NoGradGuard ng;
    if (drop_plans) unrun.emplace(h->m);
    // The optimising executor would run profiling and specialised plans;
    // the plain interpreter records exactly the ops the code asks for.
    torch::jit::GraphOptimizerEnabledGuard opt(false);
    // The tracer takes tensors and plain containers of them as outputs,
    // not NamedTuples or None entries; handing it the output's tensors
    // flattened makes each a graph output, whatever holds it, and the
    // structure goes into the JSON beside them.
    auto fn = [&mod, &result, &leaves](torch::jit::Stack in) -> torch::jit::Stack {
      result = mod.forward(in);
      gpt::flatten_output(result, "", &leaves);
      if (leaves.empty())
        throw std::runtime_error("forward returned " + gpt::describe_output(result) +
                                 ", which holds no tensor");
      if (auto st = torch::jit::tracer::getTracingState()) keep_dead(*st->graph);
      torch::jit::Stack out;
      for (const auto &l : leaves) out.emplace_back(l.t);
      return out;
    };
    Stamping stamp;
    auto res = torch::jit::tracer::trace(
        stack, fn, [](const at::Tensor &) { return std::string(); },
        /*strict=*/false, /*force_outplace=*/false, &mod);
    state = res.first;
    unrun.reset();
  } catch (...) {
    h->m.train(was_training);
    throw;
  }
  h->m.train(was_training);
  drop_keep(*state->graph);
  Exporter ex;
  ex.g = state->graph;
  ex.self = ex.g->inputs().at(0);
  std::map<std::string, int> traced;
  for (Node *n : ex.g->nodes())
    if (n->hasAttribute(kSiteAttr)) traced[n->s(kSiteAttr)]++;
  if (!traced.empty()) {
    std::map<std::string, int> code = code_sites(h->m);
    for (const auto &kv : traced)
      if (kv.second == 1 && code[kv.first] == 1) ex.sites.insert(kv.first);
  }
  return ex.run(h->m, gpt::output_info_json(result, leaves));
}

// export_ir_call is both bridge calls: the pass chosen (the training-mode
// trace only ever shape-only, so that no statistic of the module moves).
gpt_err export_ir_call(gpt_module h, const gpt_tensor *inputs, int n, int pass, bool train,
                       const char *what, char **json, int *meta) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  if (meta != nullptr) *meta = 0;
  gpt::Entry entry(h);
  if (!h->m.find_method("forward")) return gpt::dup("the model has no forward method");
  std::vector<at::Tensor> in = gpt::tensors_of(inputs, n, what);
  if (pass != GPT_PASS_REAL) {
    // The shape-only pass records the same ops with the same shapes at a
    // fraction of the time and none of the activations' memory.
    std::string js;
    std::string why = gpt::meta_pass(
        h, in, [h, &js, train](const std::vector<at::Tensor> &meta_in) { js = export_ir(h, meta_in, train, true); });
    if (why.empty()) {
      *json = gpt::dup(js);
      if (meta != nullptr) *meta = 1;
      return nullptr;
    }
    if (pass == GPT_PASS_META) return gpt::dup("meta pass: " + why);
  }
  gpt::unpark(h);
  *json = gpt::dup(export_ir(h, in, train, false));
  GPT_CATCH
}

}  // namespace

extern "C" {

gpt_err gpt_module_export_ir(gpt_module h, const gpt_tensor *inputs, int n, int pass,
                             char **json, int *meta) {
  return export_ir_call(h, inputs, n, pass, false, "export_ir", json, meta);
}

gpt_err gpt_module_export_ir_train(gpt_module h, const gpt_tensor *inputs, int n, char **json) {
  return export_ir_call(h, inputs, n, GPT_PASS_META, true, "export_ir_train", json, nullptr);
}

}  // extern "C"
