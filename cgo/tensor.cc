// tensor.cc: tensor handles and the few tensor ops the Go side needs.
#include <torch/cuda.h>

#include "internal.h"

namespace gpt {

std::atomic<int64_t> live_tensors{0};

at::ScalarType to_scalar(int dtype) {
  switch (dtype) {
    case GPT_FLOAT32: return at::kFloat;
    case GPT_FLOAT64: return at::kDouble;
    case GPT_INT64: return at::kLong;
    case GPT_INT32: return at::kInt;
    case GPT_UINT8: return at::kByte;
    case GPT_BOOL: return at::kBool;
    case GPT_FLOAT16: return at::kHalf;
    case GPT_BFLOAT16: return at::kBFloat16;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

int from_scalar(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return GPT_FLOAT32;
    case at::kDouble: return GPT_FLOAT64;
    case at::kLong: return GPT_INT64;
    case at::kInt: return GPT_INT32;
    case at::kByte: return GPT_UINT8;
    case at::kBool: return GPT_BOOL;
    case at::kHalf: return GPT_FLOAT16;
    case at::kBFloat16: return GPT_BFLOAT16;
    default: return GPT_OTHER;
  }
}

c10::Device parse_device(const char *device) {
  if (device == nullptr || *device == 0) return c10::Device(c10::kCPU);
  return c10::Device(std::string(device));
}

std::vector<int64_t> dims_of(const int64_t *dims, int n) {
  if (n < 0) throw std::invalid_argument("negative rank");
  return std::vector<int64_t>(dims, dims + n);
}

namespace {

// tensor_dims is a new tensor's shape: dims_of, each dimension at least 0.
std::vector<int64_t> tensor_dims(const int64_t *dims, int n) {
  auto sizes = dims_of(dims, n);
  for (auto d : sizes)
    if (d < 0) throw std::invalid_argument("negative dimension in shape");
  return sizes;
}

// host_copy is a new host tensor of sizes with opts holding a copy of data.
at::Tensor host_copy(const void *data, const std::vector<int64_t> &sizes, const at::TensorOptions &opts) {
  at::Tensor t = at::empty(sizes, opts);
  if (t.numel() > 0) {
    if (data == nullptr) throw std::invalid_argument("NULL data for a non-empty tensor");
    std::memcpy(t.data_ptr(), data, t.numel() * t.element_size());
  }
  return t;
}

}  // namespace

}  // namespace gpt

#define T(h) ((h)->t)

extern "C" {

gpt_err gpt_tensor_from_data(const void *data, const int64_t *shape, int ndim,
                             int dtype, const char *device, gpt_tensor *out) {
  GPT_TRY
  auto st = gpt::to_scalar(dtype);
  auto sizes = gpt::tensor_dims(shape, ndim);
  auto dev = gpt::parse_device(device);
  at::Tensor t = gpt::host_copy(data, sizes, at::TensorOptions().dtype(st));
  if (dev != t.device()) t = t.to(dev);
  *out = gpt::wrap(std::move(t));
  GPT_CATCH
}

gpt_err gpt_tensor_from_data_pinned(const void *data, const int64_t *shape, int ndim,
                                    int dtype, gpt_tensor *out) {
  GPT_TRY
  auto st = gpt::to_scalar(dtype);
  auto sizes = gpt::tensor_dims(shape, ndim);
  // Pinned memory comes from CUDA's caching host allocator: cheap after the
  // first batches, and a copy from it to the device does not block.
  auto opts = at::TensorOptions().dtype(st).pinned_memory(torch::cuda::is_available());
  *out = gpt::wrap(gpt::host_copy(data, sizes, opts));
  GPT_CATCH
}

gpt_err gpt_tensor_copy_data(gpt_tensor h, void *dst, int64_t nbytes) {
  GPT_CHECK_HANDLE(h, "tensor")
  GPT_TRY
  at::Tensor t = T(h).detach().to(at::kCPU).contiguous();
  int64_t need = t.numel() * static_cast<int64_t>(t.element_size());
  if (need != nbytes)
    return gpt::dup("copy_data: buffer has " + std::to_string(nbytes) +
                    " bytes, tensor needs " + std::to_string(need));
  if (need > 0) std::memcpy(dst, t.data_ptr(), need);
  GPT_CATCH
}

gpt_err gpt_tensor_shape(gpt_tensor h, int64_t *dims, int cap, int *ndim) {
  GPT_CHECK_HANDLE(h, "tensor")
  GPT_TRY
  auto s = T(h).sizes();
  *ndim = static_cast<int>(s.size());
  if (static_cast<int>(s.size()) > cap) return gpt::dup("shape: rank exceeds buffer");
  for (size_t i = 0; i < s.size(); i++) dims[i] = s[i];
  GPT_CATCH
}

gpt_err gpt_tensor_to_dtype(gpt_tensor h, int dtype, gpt_tensor *out) {
  GPT_CHECK_HANDLE(h, "tensor")
  GPT_TRY
  *out = gpt::wrap(T(h).to(gpt::to_scalar(dtype)));
  GPT_CATCH
}

gpt_err gpt_tensor_index_select(gpt_tensor h, int dim, const int64_t *idx,
                                int64_t n, gpt_tensor *out) {
  GPT_CHECK_HANDLE(h, "tensor")
  GPT_TRY
  auto index = at::empty({n}, at::kLong);
  if (n > 0) std::memcpy(index.data_ptr(), idx, n * sizeof(int64_t));
  *out = gpt::wrap(T(h).index_select(dim, index.to(T(h).device())));
  GPT_CATCH
}

gpt_err gpt_tensor_norm(gpt_tensor h, double p, const int64_t *dims, int ndims,
                        int keepdim, gpt_tensor *out) {
  GPT_CHECK_HANDLE(h, "tensor")
  GPT_TRY
  at::Tensor t = T(h).detach();
  if (ndims == 0) {
    *out = gpt::wrap(t.norm(p));
  } else {
    *out = gpt::wrap(t.norm(p, gpt::dims_of(dims, ndims), keepdim != 0));
  }
  GPT_CATCH
}

gpt_err gpt_tensor_randn(const int64_t *shape, int ndim, const char *device,
                         gpt_tensor *out) {
  GPT_TRY
  *out = gpt::wrap(at::randn(gpt::dims_of(shape, ndim),
                             at::TensorOptions().device(gpt::parse_device(device))));
  GPT_CATCH
}

gpt_err gpt_tensor_max_abs_diff(gpt_tensor a, gpt_tensor b, double *maxdiff,
                                double *maxabs) {
  GPT_CHECK_HANDLE(a, "tensor a")
  GPT_CHECK_HANDLE(b, "tensor b")
  GPT_TRY
  at::Tensor x = T(a).detach().to(at::kDouble);
  at::Tensor y = T(b).detach().to(at::kDouble).to(x.device());
  if (x.sizes() != y.sizes())
    return gpt::dup("max_abs_diff: shapes differ: " + c10::str(x.sizes()) +
                    " vs " + c10::str(y.sizes()));
  *maxdiff = x.numel() == 0 ? 0 : (x - y).abs().max().item<double>();
  *maxabs = x.numel() == 0 ? 0 : x.abs().max().item<double>();
  GPT_CATCH
}

gpt_err gpt_tensor_free(gpt_tensor h) {
  if (h == nullptr) return nullptr;
  GPT_TRY
  delete h;
  gpt::live_tensors--;
  GPT_CATCH
}

gpt_err gpt_live_tensors(int64_t *out) {
  *out = gpt::live_tensors.load();
  return nullptr;
}

}  // extern "C"
