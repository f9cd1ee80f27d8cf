// train.cc: losses, optimizers and whole training/eval/scoring steps.
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <cstdlib>

#include "internal.h"

struct gpt_optim_s {
  std::unique_ptr<torch::optim::Optimizer> opt;
  // fp16 loss scaling (torch.cuda.amp.GradScaler's dynamic scale and
  // growth tracker), made on the first fp16 step.
  at::Tensor scale, growth;
};

namespace {

std::vector<at::Tensor> trainable(const torch::jit::Module &m) {
  std::vector<at::Tensor> ps;
  for (at::Tensor p : m.parameters(true))
    if (p.requires_grad()) ps.push_back(p);
  return ps;
}

// batch_labels checks the targets y against the classifier output logits
// and returns them on the logits' device. Labels still on the host (a
// batch for a CUDA step) are checked there, without a device sync.
at::Tensor batch_labels(const at::Tensor &logits, const at::Tensor &y) {
  if (logits.dim() != 2)
    throw std::runtime_error("the model's output has shape " + c10::str(logits.sizes()) +
                             "; a classifier must return [N, classes]");
  if (y.dim() != 1 || y.size(0) != logits.size(0))
    throw std::runtime_error("targets have shape " + c10::str(y.sizes()) +
                             ", want [" + std::to_string(logits.size(0)) + "]");
  if (y.numel() > 0) {
    int64_t hi = y.max().item<int64_t>(), lo = y.min().item<int64_t>();
    if (lo < 0 || hi >= logits.size(1))
      throw std::runtime_error("label " + std::to_string(lo < 0 ? lo : hi) +
                               " is outside the model's " + std::to_string(logits.size(1)) +
                               " classes");
  }
  return gpt::on_device(y, logits.device());
}

void drop_optimizer_grads(torch::optim::Optimizer &opt) {
  for (auto &group : opt.param_groups()) gpt::drop_grads(group.params());
}

// backward_step runs backward of the loss l and the optimizer step. Under
// fp16 autocast the loss is scaled first and the gradients unscaled before
// the step, which is skipped when one is not finite, and the scale adapts
// (torch.cuda.amp.GradScaler's rules: halve on overflow, double after 2000
// clean steps, start at 2^16).
void backward_step(gpt_optim_s *o, const at::Tensor &l, bool fp16) {
  if (!fp16) {
    l.backward();
    o->opt->step();
    return;
  }
  auto fopts = l.options().dtype(at::kFloat);
  if (!o->scale.defined()) {
    o->scale = at::full({1}, 65536.0, fopts);
    o->growth = at::zeros({1}, fopts.dtype(at::kInt));
  }
  (l.to(at::kFloat) * o->scale).backward();
  std::vector<at::Tensor> grads;
  for (auto &group : o->opt->param_groups())
    for (auto &p : group.params())
      if (p.grad().defined()) grads.push_back(p.grad());
  at::Tensor found = at::zeros({1}, fopts);
  if (!grads.empty()) at::_amp_foreach_non_finite_check_and_unscale_(grads, found, o->scale.reciprocal());
  if (found.item<float>() == 0) o->opt->step();
  at::_amp_update_scale_(o->scale, o->growth, found, 2.0, 0.5, 2000);
}

// channels_last lays a CPU image batch out as NHWC, the layout oneDNN's
// convolutions work in. Fed NCHW, a network converts activations on the way
// in and out of each conv and BatchNorm runs its slower NCHW kernels
// (measured for a train step: resnet18 12%, mobilenet_v2 37%, the demo CNN
// 20% faster in NHWC). PyTorch loops that decode to HWC arrays get this
// layout by accident: a permuted single-channel batch has NHWC strides.
at::Tensor channels_last(const at::Tensor &x) {
  if (x.size(1) == 1) {
    // contiguous(ChannelsLast) is a no-op here: one channel is both layouts.
    // The stride of a size-1 dim is free, and a channel stride of 1 is what
    // tells the kernels this batch is NHWC.
    at::Tensor c = x.contiguous();
    return c.as_strided(c.sizes(), {c.size(2) * c.size(3), 1, c.size(3), 1});
  }
  return x.contiguous(at::MemoryFormat::ChannelsLast);
}

// accepts_nhwc probes once per module whether its forward runs on an NHWC
// batch. Models written as x.view(n, -1) after a conv need NCHW memory and
// throw on NHWC; the probe is one sample in eval mode without grad, so it
// leaves no trace (no BatchNorm statistics update) whatever the answer.
bool accepts_nhwc(gpt_module_s *h, const at::Tensor &x) {
  int mode = gpt::channels_last.load();
  if (mode == 0 || (mode == 2 && !x.device().is_cuda())) return false;
  if (h->nhwc >= 0) return h->nhwc == 1;
  std::vector<std::pair<torch::jit::Module, bool>> modes;
  for (const auto &sm : h->m.modules()) modes.emplace_back(sm, sm.is_training());
  h->m.eval();
  try {
    at::NoGradGuard ng;
    std::vector<c10::IValue> in{channels_last(x.narrow(0, 0, 1))};
    (void)h->m.forward(in);
    h->nhwc = 1;
    // On CUDA the weights take the layout too: cuDNN then runs NHWC
    // kernels (with bf16/fp16, the tensor-core ones) without converting
    // a weight each step. The tensors change in place, so an optimizer
    // already made over them still holds them.
    if (x.device().is_cuda())
      for (at::Tensor p : h->m.parameters(true))
        if (p.dim() == 4 && !p.is_contiguous(at::MemoryFormat::ChannelsLast))
          p.set_data(p.detach().contiguous(at::MemoryFormat::ChannelsLast));
  } catch (const std::exception &) {
    h->nhwc = 0;
  }
  // Module::train is recursive; restore each module's own flag instead.
  for (auto &[sm, training] : modes) sm.setattr("training", training);
  return h->nhwc == 1;
}

at::Tensor forward_logits(gpt_module_s *h, const at::Tensor &x) {
  bool nhwc = x.dim() == 4 && x.size(0) > 0 && (x.device().is_cpu() || x.device().is_cuda()) &&
              accepts_nhwc(h, x);
  std::vector<c10::IValue> in{nhwc ? channels_last(x) : x};
  return gpt::select_output(h->m.forward(in));
}

}  // namespace

extern "C" {

gpt_err gpt_optim_sgd(gpt_module m, double lr, double momentum, double weight_decay,
                      int nesterov, gpt_optim *out) {
  GPT_CHECK_HANDLE(m, "module")
  GPT_TRY
  auto opts = torch::optim::SGDOptions(lr).momentum(momentum).weight_decay(weight_decay).nesterov(nesterov != 0);
  // The optimiser holds the parameters: their bytes come back first.
  gpt::unpark(m);
  *out = new gpt_optim_s{std::make_unique<torch::optim::SGD>(trainable(m->m), opts)};
  GPT_CATCH
}

gpt_err gpt_optim_adam(gpt_module m, double lr, double beta1, double beta2, double eps,
                       double weight_decay, gpt_optim *out) {
  GPT_CHECK_HANDLE(m, "module")
  GPT_TRY
  auto opts = torch::optim::AdamOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(weight_decay);
  // The optimiser holds the parameters: their bytes come back first.
  gpt::unpark(m);
  *out = new gpt_optim_s{std::make_unique<torch::optim::Adam>(trainable(m->m), opts)};
  GPT_CATCH
}

gpt_err gpt_optim_set_lr(gpt_optim o, double lr) {
  GPT_CHECK_HANDLE(o, "optimizer")
  GPT_TRY
  for (auto &group : o->opt->param_groups()) group.options().set_lr(lr);
  GPT_CATCH
}

gpt_err gpt_optim_free(gpt_optim o) {
  if (o == nullptr) return nullptr;
  GPT_TRY
  delete o;
  GPT_CATCH
}

gpt_err gpt_train_step(gpt_module m, gpt_optim o, gpt_tensor x, gpt_tensor y,
                       double *loss, int64_t *correct) {
  GPT_CHECK_HANDLE(m, "module")
  GPT_CHECK_HANDLE(o, "optimizer")
  GPT_CHECK_HANDLE(x, "input")
  GPT_CHECK_HANDLE(y, "targets")
  GPT_TRY
  gpt::Entry entry(m);
  gpt::unpark(m);
  gpt::CudaScope cuda(m, true);
  at::AutoGradMode grad(true);
  drop_optimizer_grads(*o->opt);
  at::Tensor logits = forward_logits(m, gpt::on_device(x->t, m->device));
  at::Tensor yt = batch_labels(logits, y->t);
  at::Tensor l = torch::nn::functional::cross_entropy(logits, yt);
  backward_step(o, l, cuda.fp16());
  *loss = l.item<double>();
  *correct = logits.detach().argmax(1).eq(yt).sum().item<int64_t>();
  GPT_CATCH
}

gpt_err gpt_train_step_distill(gpt_module m, gpt_module teacher, gpt_optim o, gpt_tensor x,
                               gpt_tensor y, double temperature, double weight, double *loss,
                               int64_t *correct) {
  GPT_CHECK_HANDLE(m, "module")
  GPT_CHECK_HANDLE(teacher, "teacher")
  GPT_CHECK_HANDLE(o, "optimizer")
  GPT_CHECK_HANDLE(x, "input")
  GPT_CHECK_HANDLE(y, "targets")
  if (!(temperature > 0)) return gpt::dup("train_step_distill: temperature must be > 0");
  if (!(weight >= 0 && weight <= 1)) return gpt::dup("train_step_distill: weight must be in [0,1]");
  // One handle as both would train the teacher it learns from.
  if (teacher == m) return gpt::dup("train_step_distill: the teacher is the student");
  GPT_TRY
  gpt::Entry entry(m);
  gpt::unpark(m);
  gpt::unpark(teacher);
  gpt::CudaScope cuda(m, true);
  at::Tensor xt = gpt::on_device(x->t, m->device);
  at::Tensor soft;
  {
    // The teacher's dropout and BatchNorm must not move: it is the fixed
    // target. eval() is recursive, so it runs only when someone left the
    // teacher training, not every step.
    if (teacher->m.is_training()) teacher->m.eval();
    at::NoGradGuard ng;
    soft = forward_logits(teacher, xt);
  }
  at::AutoGradMode grad(true);
  drop_optimizer_grads(*o->opt);
  at::Tensor logits = forward_logits(m, xt);
  at::Tensor yt = batch_labels(logits, y->t);
  if (soft.sizes() != logits.sizes())
    throw std::runtime_error("the teacher's output has shape " + c10::str(soft.sizes()) +
                             ", the student's " + c10::str(logits.sizes()) +
                             "; distillation needs the same classes");
  namespace F = torch::nn::functional;
  at::Tensor ce = F::cross_entropy(logits, yt);
  // KL(p_t || p_s) = sum_c p_t (log p_t - log p_s), averaged over the batch
  // (PyTorch's kl_div "batchmean"). T² keeps the soft gradients' scale
  // independent of T (Hinton et al. 2015).
  // Under amp in float32, as autocast runs log_softmax.
  at::Tensor lg = cuda.autocast() ? logits.to(at::kFloat) : logits;
  at::Tensor log_pt = at::log_softmax(soft.to(lg.scalar_type()) / temperature, 1);
  at::Tensor log_ps = at::log_softmax(lg / temperature, 1);
  at::Tensor kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean();
  at::Tensor l = ce * (1 - weight) + kl * (weight * temperature * temperature);
  backward_step(o, l, cuda.fp16());
  *loss = l.item<double>();
  *correct = logits.detach().argmax(1).eq(yt).sum().item<int64_t>();
  GPT_CATCH
}

gpt_err gpt_eval_batch(gpt_module m, gpt_tensor x, gpt_tensor y, double *loss_sum,
                       int64_t *correct, int64_t *preds, int64_t preds_cap) {
  GPT_CHECK_HANDLE(m, "module")
  GPT_CHECK_HANDLE(x, "input")
  GPT_CHECK_HANDLE(y, "targets")
  GPT_TRY
  gpt::Entry entry(m);
  gpt::unpark(m);
  gpt::CudaScope cuda(m, true);
  at::NoGradGuard ng;
  at::Tensor logits = forward_logits(m, gpt::on_device(x->t, m->device));
  at::Tensor yt = batch_labels(logits, y->t);
  namespace F = torch::nn::functional;
  *loss_sum = F::cross_entropy(logits, yt, F::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .item<double>();
  at::Tensor p = logits.argmax(1);
  if (preds != nullptr && p.numel() > preds_cap)
    return gpt::dup("eval_batch: " + std::to_string(p.numel()) + " predictions for a buffer of " +
                    std::to_string(preds_cap));
  *correct = p.eq(yt).sum().item<int64_t>();
  if (preds != nullptr) {
    at::Tensor pc = p.to(at::kCPU).to(at::kLong).contiguous();
    std::memcpy(preds, pc.data_ptr(), pc.numel() * sizeof(int64_t));
  }
  GPT_CATCH
}

gpt_err gpt_bn_recalibrate_step(gpt_module m, gpt_tensor x, int step, int *count) {
  GPT_CHECK_HANDLE(m, "module")
  GPT_CHECK_HANDLE(x, "input")
  GPT_TRY
  if (step < 0) return gpt::dup("bn_recalibrate: step must not be negative");
  gpt::Entry entry(m);
  gpt::unpark(m);
  gpt::CudaScope cuda(m, false);
  // A BatchNorm (a module with running statistics and a momentum) updates
  // its statistics R by R' = (1-f)R + fS in a training-mode forward, S the
  // batch's statistics and f its momentum (a scripted constant) or, when
  // that is None, 1/num_batches_tracked. S is recovered from R and R', and
  // R becomes the running average over the steps, kR/(k+1) + S/(k+1): step 0
  // replaces the statistics by the batch's. num_batches_tracked and every
  // training flag are restored.
  struct BN {
    torch::jit::Module m;
    c10::IValue momentum;
    at::Tensor mean, var, tracked;
  };
  std::vector<BN> bns;
  std::vector<std::pair<torch::jit::Module, bool>> modes;
  for (const auto &sm : m->m.modules()) {
    modes.emplace_back(sm, sm.is_training());
    if (!sm.hasattr("running_mean") || !sm.hasattr("running_var") || !sm.hasattr("momentum")) continue;
    c10::IValue mom = sm.attr("momentum");
    c10::IValue mean = sm.attr("running_mean"), var = sm.attr("running_var");
    if (!(mom.isDouble() || mom.isNone()) || !mean.isTensor() || !var.isTensor()) continue;
    at::Tensor tracked;
    if (sm.hasattr("num_batches_tracked") && sm.attr("num_batches_tracked").isTensor())
      tracked = sm.attr("num_batches_tracked").toTensor();
    if (mom.isNone() && !tracked.defined()) continue;
    bns.push_back({sm, mom, mean.toTensor(), var.toTensor(), tracked});
  }
  *count = static_cast<int>(bns.size());
  if (bns.empty()) return nullptr;
  at::NoGradGuard ng;
  std::vector<at::Tensor> old_mean, old_var, old_tracked;
  for (auto &b : bns) {
    old_mean.push_back(b.mean.clone());
    old_var.push_back(b.var.clone());
    old_tracked.push_back(b.tracked.defined() ? b.tracked.clone() : at::Tensor());
  }
  try {
    m->m.train(true);
    (void)forward_logits(m, gpt::on_device(x->t, m->device));
  } catch (...) {
    for (auto &[sm, training] : modes) sm.setattr("training", training);
    for (size_t i = 0; i < bns.size(); i++) {
      bns[i].mean.copy_(old_mean[i]);
      bns[i].var.copy_(old_var[i]);
      if (old_tracked[i].defined()) bns[i].tracked.copy_(old_tracked[i]);
    }
    throw;
  }
  for (auto &[sm, training] : modes) sm.setattr("training", training);
  const double k = step;
  for (size_t i = 0; i < bns.size(); i++) {
    BN &b = bns[i];
    double f = b.momentum.isDouble() ? b.momentum.toDouble() : 1.0 / b.tracked.item<double>();
    if (old_tracked[i].defined()) b.tracked.copy_(old_tracked[i]);
    if (!(f > 0)) continue;  // momentum 0: the statistics never move
    at::Tensor s_mean = (b.mean - old_mean[i] * (1 - f)) / f;
    at::Tensor s_var = (b.var - old_var[i] * (1 - f)) / f;
    b.mean.copy_(old_mean[i] * (k / (k + 1)) + s_mean / (k + 1));
    b.var.copy_(old_var[i] * (k / (k + 1)) + s_var / (k + 1));
  }
  GPT_CATCH
}

gpt_err gpt_taylor_accumulate(gpt_module m, gpt_tensor x, gpt_tensor y, int n,
                              const char **weight_names, const int *dims,
                              gpt_tensor *accum, double *loss) {
  GPT_CHECK_HANDLE(m, "module")
  GPT_CHECK_HANDLE(x, "input")
  GPT_CHECK_HANDLE(y, "targets")
  GPT_TRY
  gpt::Entry entry(m);
  gpt::unpark(m);
  gpt::CudaScope cuda(m, false);
  if (n > 0 && (weight_names == nullptr || dims == nullptr || accum == nullptr))
    return gpt::dup("taylor: NULL names, dims or accumulators");
  at::AutoGradMode grad(true);
  std::vector<at::Tensor> ws;
  ws.reserve(n);
  for (int i = 0; i < n; i++) {
    std::string leaf;
    torch::jit::Module owner = gpt::owner_of(m->m, weight_names[i], &leaf);
    if (!owner.hasattr(leaf) || !owner.attr(leaf).isTensor())
      return gpt::dup(std::string("taylor: no tensor \"") + weight_names[i] + "\"");
    at::Tensor w = owner.attr(leaf).toTensor();
    if (!w.requires_grad())
      return gpt::dup(std::string("taylor: \"") + weight_names[i] + "\" does not require grad");
    if (dims[i] < 0 || dims[i] >= w.dim())
      return gpt::dup(std::string("taylor: \"") + weight_names[i] + "\" has no dim " +
                      std::to_string(dims[i]));
    ws.push_back(w);
  }
  gpt::drop_grads(m->m.parameters(true));
  at::Tensor logits = forward_logits(m, gpt::on_device(x->t, m->device));
  at::Tensor l = torch::nn::functional::cross_entropy(logits, batch_labels(logits, y->t));
  l.backward();
  *loss = l.item<double>();
  at::NoGradGuard ng;
  for (int i = 0; i < n; i++) {
    const at::Tensor &g = ws[i].grad();
    at::Tensor s;
    if (!g.defined()) {
      s = at::zeros({ws[i].size(dims[i])}, ws[i].options().dtype(at::kDouble));
    } else {
      at::Tensor prod = (ws[i].detach() * g).to(at::kDouble).pow(2).movedim(dims[i], 0);
      s = prod.reshape({prod.size(0), -1}).sum(1);
    }
    if (accum[i] == nullptr) {
      accum[i] = gpt::wrap(s);
    } else {
      accum[i]->t.add_(s.to(accum[i]->t.device()));
    }
  }
  gpt::drop_grads(m->m.parameters(true));
  GPT_CATCH
}

}  // extern "C"
