// output.cc: what forward returns, and which of its tensors is the
// prediction.
//
// A model may return a tensor or any nesting of tuples, NamedTuples, lists
// and dicts (googlenet's GoogLeNetOutputs, a segmentation model's
// {"out", "aux"}). Every consumer that needs one tensor (the loss, accuracy,
// the run check, latency) goes through select_output, and the IR export
// through flatten, so the rule lives here once:
//  - a leaf's path joins, from the root, a dict's key, a NamedTuple's field
//    name, or a tuple's or list's index with dots ("out", "aux.0");
//  - the output setting (gpt_set_output) names a path: a key, field name or
//    index per level; "" is the whole output;
//  - the chosen node gives its first tensor depth-first, where a dict's "out"
//    entry (torchvision's segmentation models) comes before its others.
#include <mutex>
#include <sstream>

#include "internal.h"

namespace {

std::mutex spec_mu;
std::string spec_value;  // guarded by spec_mu

std::string join(const std::string &prefix, const std::string &comp) {
  return prefix.empty() ? comp : prefix + "." + comp;
}

std::string key_name(const c10::IValue &k) {
  if (k.isString()) return k.toStringRef();
  if (k.isInt()) return std::to_string(k.toInt());
  std::ostringstream o;
  o << k;
  return o.str();
}

// field_names gives a NamedTuple's field names, or nothing for a plain tuple.
std::vector<std::string> field_names(const c10::IValue &v) {
  std::vector<std::string> out;
  auto t = v.type()->cast<c10::TupleType>();
  if (!t || !t->schema()) return out;
  for (const auto &a : t->schema()->arguments()) out.push_back(a.name());
  return out;
}

std::string tuple_name(const c10::IValue &v) {
  auto t = v.type()->cast<c10::TupleType>();
  if (t && t->schema() && t->name()) return t->name()->name();
  return "tuple";
}

// children lists a container's entries with their path components, in the
// order forward built them.
std::vector<std::pair<std::string, c10::IValue>> children(const c10::IValue &v) {
  std::vector<std::pair<std::string, c10::IValue>> out;
  if (v.isTuple()) {
    auto names = field_names(v);
    const auto &el = v.toTupleRef().elements();
    for (size_t i = 0; i < el.size(); i++)
      out.emplace_back(i < names.size() ? names[i] : std::to_string(i), el[i]);
  } else if (v.isList()) {
    size_t i = 0;
    for (const c10::IValue &e : v.toListRef()) out.emplace_back(std::to_string(i++), e);
  } else if (v.isGenericDict()) {
    for (const auto &kv : v.toGenericDict()) out.emplace_back(key_name(kv.key()), kv.value());
  }
  return out;
}

// first_leaf finds the prediction within v: its first tensor depth-first,
// a dict's "out" entry first.
bool first_leaf(const c10::IValue &v, const std::string &path, std::string *at,
                at::Tensor *t) {
  if (v.isTensor()) {
    *at = path;
    *t = v.toTensor();
    return true;
  }
  auto kids = children(v);
  if (v.isGenericDict()) {
    for (const auto &[k, c] : kids)
      if (k == "out" && first_leaf(c, join(path, k), at, t)) return true;
  }
  for (const auto &[k, c] : kids)
    if (first_leaf(c, join(path, k), at, t)) return true;
  return false;
}

std::vector<std::string> split_spec(const std::string &spec) {
  std::vector<std::string> out;
  if (spec.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t dot = spec.find('.', start);
    out.push_back(spec.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return out;
    start = dot + 1;
  }
}

bool is_index(const std::string &s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

std::string paths_list(const std::vector<gpt::OutputLeaf> &leaves) {
  std::string s;
  for (const auto &l : leaves) {
    if (!s.empty()) s += ", ";
    s += l.path.empty() ? "\"\" (the output itself)" : l.path;
  }
  return s.empty() ? "none (forward returned no tensor)" : s;
}

}  // namespace

namespace gpt {

void set_output_spec(const std::string &spec) {
  std::lock_guard<std::mutex> g(spec_mu);
  spec_value = spec;
}

std::string output_spec() {
  std::lock_guard<std::mutex> g(spec_mu);
  return spec_value;
}

void flatten_output(const c10::IValue &v, const std::string &path,
                    std::vector<OutputLeaf> *out) {
  if (v.isTensor()) {
    out->push_back({path, v.toTensor()});
    return;
  }
  for (const auto &[k, c] : children(v)) flatten_output(c, join(path, k), out);
}

std::string describe_output(const c10::IValue &v) {
  if (v.isTensor()) return "tensor";
  if (v.isNone()) return "None";
  if (v.isTuple() || v.isList() || v.isGenericDict()) {
    bool named = v.isGenericDict() || !field_names(v).empty();
    std::string s = v.isList() ? "list" : v.isGenericDict() ? "dict" : tuple_name(v);
    s += "(";
    bool first = true;
    for (const auto &[k, c] : children(v)) {
      if (!first) s += ", ";
      first = false;
      if (named) s += k + ": ";
      s += describe_output(c);
    }
    return s + ")";
  }
  std::string tag = v.tagKind();
  for (auto &c : tag) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return tag;
}

std::string select_path(const c10::IValue &v, const std::string &spec) {
  c10::IValue cur = v;
  std::string path;
  auto missing = [&](const std::string &why) {
    std::vector<OutputLeaf> leaves;
    flatten_output(v, "", &leaves);
    return std::invalid_argument("output \"" + spec + "\": " + why + " in the model's output " +
                                 describe_output(v) + "; its tensors are: " + paths_list(leaves));
  };
  for (const std::string &comp : split_spec(spec)) {
    bool found = false;
    if (cur.isTuple() || cur.isList() || cur.isGenericDict()) {
      auto kids = children(cur);
      for (size_t i = 0; i < kids.size() && !found; i++) {
        // A NamedTuple's field may be named or counted; dict keys and list
        // places only as they are.
        bool hit = kids[i].first == comp ||
                   (cur.isTuple() && is_index(comp) && std::stoul(comp) == i);
        if (hit) {
          path = join(path, kids[i].first);
          cur = kids[i].second;
          found = true;
        }
      }
    }
    if (!found) throw missing("no \"" + join(path, comp) + "\"");
  }
  std::string at;
  at::Tensor t;
  if (!first_leaf(cur, path, &at, &t))
    throw missing(path.empty() ? "no tensor" : "no tensor at \"" + path + "\"");
  return at;
}

at::Tensor select_output(const c10::IValue &v) {
  std::string at = select_path(v, output_spec());
  std::vector<OutputLeaf> leaves;
  flatten_output(v, "", &leaves);
  for (const auto &l : leaves)
    if (l.path == at) return l.t;
  throw std::logic_error("output path \"" + at + "\" vanished");  // unreachable
}

std::string output_info_json(const c10::IValue &v, const std::vector<OutputLeaf> &leaves) {
  std::ostringstream o;
  o << "{\"structure\":";
  json_str(o, describe_output(v));
  o << ",\"paths\":[";
  for (size_t i = 0; i < leaves.size(); i++) {
    if (i) o << ",";
    json_str(o, leaves[i].path);
  }
  o << "]";
  try {
    std::string at = select_path(v, output_spec());
    for (size_t i = 0; i < leaves.size(); i++) {
      if (leaves[i].path == at) {
        o << ",\"selected\":" << i;
        break;
      }
    }
  } catch (const std::invalid_argument &e) {
    o << ",\"selected\":-1,\"error\":";
    json_str(o, e.what());
  }
  o << "}";
  return o.str();
}

}  // namespace gpt

extern "C" {

gpt_err gpt_set_output(const char *spec) {
  GPT_TRY
  gpt::set_output_spec(spec == nullptr ? "" : spec);
  GPT_CATCH
}

gpt_err gpt_module_forward_all(gpt_module h, const gpt_tensor *inputs, int n, int no_grad,
                               gpt_tensor **outs, int *nouts, char **info) {
  GPT_CHECK_HANDLE(h, "module")
  GPT_TRY
  c10::IValue r = gpt::run_forward(h, inputs, n, no_grad);
  std::vector<gpt::OutputLeaf> leaves;
  gpt::flatten_output(r, "", &leaves);
  if (info != nullptr) *info = gpt::dup(gpt::output_info_json(r, leaves));
  auto *arr = static_cast<gpt_tensor *>(std::malloc(sizeof(gpt_tensor) * (leaves.size() + 1)));
  if (arr == nullptr) {
    if (info != nullptr) {
      std::free(*info);
      *info = nullptr;
    }
    return gpt::dup("forward_all: out of memory");
  }
  for (size_t i = 0; i < leaves.size(); i++) arr[i] = gpt::wrap(leaves[i].t);
  *outs = arr;
  *nouts = static_cast<int>(leaves.size());
  GPT_CATCH
}

}  // extern "C"
