// optime.cc: standalone timing of one conv or linear layer, for the
// latency lookup table of my_pruning's `target: latency`.
#include <chrono>

#include <torch/cuda.h>

#include "internal.h"

extern "C" {

gpt_err gpt_op_time(int kind, const int64_t *x_shape, int x_ndim, const int64_t *w_shape, int w_ndim, int bias,
                    const int64_t *stride, const int64_t *padding, const int64_t *dilation,
                    const int64_t *out_pad, int nsp, int transposed, int64_t groups, const char *device,
                    int threads, int warmup, int min_runs, int max_runs, int64_t budget_ns, double *times_ns,
                    int *nruns) {
  GPT_TRY
  if (kind != 0 && kind != 1) return gpt::dup("op_time: kind must be 0 (conv) or 1 (linear)");
  if (min_runs < 1 || max_runs < min_runs) return gpt::dup("op_time: need 1 <= min_runs <= max_runs");
  if (kind == 0 && (nsp < 1 || nsp > 3 || x_ndim != nsp + 2 || w_ndim != nsp + 2))
    return gpt::dup("op_time: a conv needs 1 to 3 spatial dims and input/weight of rank spatial+2");
  if (kind == 1 && (x_ndim < 1 || w_ndim != 2)) return gpt::dup("op_time: a linear needs a 2-d weight");
  if (groups < 1) return gpt::dup("op_time: groups must be at least 1");
  auto dev = gpt::parse_device(device);
  // The caller's thread counts are restored afterwards: this call borrows
  // the OS thread (OpenMP keeps the count per thread) and OpenBLAS's
  // process-wide count (the layer is timed on `threads`, a linear's BLAS
  // included); it runs while no cart slot does.
  int old = at::get_num_threads(), old_blas = gpt::blas_threads();
  gpt::apply_threads(threads);
  struct restore {
    int n, was, was_blas;
    ~restore() {
      if (n <= 0) return;
      if (n != was) at::set_num_threads(was);
      gpt::set_blas_threads(was_blas);
    }
  } r{threads, old, old_blas};
  torch::NoGradGuard ng;
  auto opt = at::TensorOptions().dtype(at::kFloat).device(dev);
  at::Tensor x = at::randn(gpt::dims_of(x_shape, x_ndim), opt);
  at::Tensor w = at::randn(gpt::dims_of(w_shape, w_ndim), opt);
  at::Tensor b;
  if (bias) {
    int64_t nb = w_shape[0];
    if (kind == 0 && transposed) nb = w_shape[1] * groups;
    b = at::randn({nb}, opt);
  }
  std::vector<int64_t> st, pd, dl, op;
  if (kind == 0) {
    st = gpt::dims_of(stride, nsp);
    pd = gpt::dims_of(padding, nsp);
    dl = gpt::dims_of(dilation, nsp);
    op = gpt::dims_of(out_pad, nsp);
  }
  auto once = [&]() {
    at::Tensor y;
    if (kind == 0) {
      y = at::convolution(x, w, b, st, pd, dl, transposed != 0, op, groups);
    } else {
      y = at::linear(x, w, b);
    }
    if (dev.is_cuda()) torch::cuda::synchronize(dev.index());
  };
  for (int i = 0; i < warmup; i++) once();
  int n = 0;
  int64_t spent = 0;
  while (n < max_runs && (n < min_runs || spent < budget_ns)) {
    auto t0 = std::chrono::steady_clock::now();
    once();
    auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    times_ns[n++] = static_cast<double>(d);
    spent += d;
  }
  *nruns = n;
  GPT_CATCH
}

}  // extern "C"
