/*
 * gptorch.h: the whole C ABI between gopruner's Go code and libtorch.
 *
 * Conventions (after tch-rs's torch-sys):
 *  - Every function returns gpt_err: NULL on success, otherwise a malloc'd,
 *    NUL-terminated message that the caller frees with gpt_free. No
 *    thread-local "last error": a goroutine may change OS threads between
 *    two calls.
 *  - Results come back through out-parameters.
 *  - Handles are opaque and freed explicitly (gpt_tensor_free,
 *    gpt_module_free, gpt_optim_free). Freeing NULL is a no-op.
 *  - Memory passed in is copied; libtorch never keeps a pointer into the
 *    caller's buffers after the call returns.
 *  - Every C++ exception is caught and becomes an error string.
 */
#ifndef GPTORCH_H
#define GPTORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef char *gpt_err;
typedef struct gpt_tensor_s *gpt_tensor;
typedef struct gpt_module_s *gpt_module;
typedef struct gpt_optim_s *gpt_optim;

/* dtype codes */
enum {
  GPT_FLOAT32 = 0,
  GPT_FLOAT64 = 1,
  GPT_INT64 = 2,
  GPT_INT32 = 3,
  GPT_UINT8 = 4,
  GPT_BOOL = 5,
  GPT_FLOAT16 = 6,
  GPT_BFLOAT16 = 7,
  GPT_OTHER = 99
};

void gpt_free(void *p);

/* ---- settings (runtime.cc) ----
 * Policy comes from the caller (Go's torch.Configure); the shim reads no
 * environment variable and runs no load-time constructor. */
/* 1 (the default): train, eval and Taylor steps probe each model once and
 * feed it image batches as channels-last (NHWC) when it accepts them (a
 * model on CUDA gets its 4-D parameters in that layout too); 2: so on CUDA
 * only, CPU batches NCHW; 0: always NCHW. */
gpt_err gpt_set_channels_last(int on);
/* CUDA steps: amp 0 off, 1 bf16, 2 fp16 autocast for train (fp16 with
 * dynamic loss scaling) and eval steps of modules on CUDA; cudnn_benchmark
 * lets cuDNN time its algorithms per input shape and keep the fastest.
 * Nothing changes on the CPU. */
gpt_err gpt_set_cuda_options(int amp, int cudnn_benchmark);
/* Which tensor of forward's result is the prediction that forward, train,
 * eval and Taylor steps use: a path of dict keys, NamedTuple field names and
 * tuple/list indices joined by dots ("out", "aux.0"); NULL or "" is the whole
 * result. The chosen value gives its first tensor depth-first, a dict's "out"
 * entry before its others. Unchecked here: a path the model's result does not
 * have fails the call that runs the model, naming the paths it has. */
gpt_err gpt_set_output(const char *spec);
/* mallopt M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (each when > 0).
 * An arena limit binds only threads that have not allocated yet: call it
 * before libtorch starts its threads. An error when mallopt refuses. */
gpt_err gpt_tune_malloc(int arena_max, int64_t mmap_threshold,
                        int64_t trim_threshold);

/* Hands the heap's free pages back to the system (malloc_trim): memory that
 * freed modules and tensors left, which the trim threshold otherwise keeps
 * resident for the next allocations. */
gpt_err gpt_release_freed(void);
/* Bytes the C heap has handed out and not had back (glibc's mallinfo2: every
 * arena, mmapped blocks included); -1 where it cannot tell. A diagnostic. */
gpt_err gpt_heap_in_use(int64_t *out);

/* ---- runtime (runtime.cc) ---- */
gpt_err gpt_version(char **out);            /* libtorch version, e.g. "1.13.1" */
gpt_err gpt_cuda_available(int *out);
gpt_err gpt_cuda_device_count(int *out);
gpt_err gpt_cudnn_available(int *out);
gpt_err gpt_set_num_threads(int n);
gpt_err gpt_get_num_threads(int *out);
/* OpenBLAS's thread count: gpt_set_num_threads, and every call on a module
 * with a thread budget, set it along with libtorch's. -1 where libtorch's
 * BLAS is not OpenBLAS. */
gpt_err gpt_get_blas_threads(int *out);
gpt_err gpt_manual_seed(uint64_t seed);     /* CPU and every CUDA device */
gpt_err gpt_cuda_synchronize(int device);   /* -1: current device */

/* ---- tensors (tensor.cc) ---- */
gpt_err gpt_tensor_from_data(const void *data, const int64_t *shape, int ndim,
                             int dtype, const char *device, gpt_tensor *out);
/* A host tensor in pinned (page-locked) memory when CUDA is available, else
 * plain: a step of a module on CUDA uploads it without waiting. */
gpt_err gpt_tensor_from_data_pinned(const void *data, const int64_t *shape, int ndim,
                                    int dtype, gpt_tensor *out);
gpt_err gpt_tensor_copy_data(gpt_tensor t, void *dst, int64_t nbytes);
gpt_err gpt_tensor_shape(gpt_tensor t, int64_t *dims, int cap, int *ndim);
gpt_err gpt_tensor_to_dtype(gpt_tensor t, int dtype, gpt_tensor *out);
gpt_err gpt_tensor_index_select(gpt_tensor t, int dim, const int64_t *idx,
                                int64_t n, gpt_tensor *out);
gpt_err gpt_tensor_norm(gpt_tensor t, double p, const int64_t *dims, int ndims,
                        int keepdim, gpt_tensor *out);
gpt_err gpt_tensor_randn(const int64_t *shape, int ndim, const char *device,
                         gpt_tensor *out);
gpt_err gpt_tensor_max_abs_diff(gpt_tensor a, gpt_tensor b, double *maxdiff,
                                double *maxabs);
gpt_err gpt_tensor_free(gpt_tensor t);
gpt_err gpt_live_tensors(int64_t *out); /* handles not yet freed */

/* ---- TorchScript modules (module.cc) ---- */
gpt_err gpt_module_load(const char *path, const char *device, gpt_module *out);
gpt_err gpt_module_load_bytes(const void *data, size_t n, const char *device,
                              gpt_module *out);
gpt_err gpt_module_save(gpt_module m, const char *path); /* writes path as it is; not atomic */
gpt_err gpt_module_save_bytes(gpt_module m, void **data, size_t *n); /* gpt_free */
/* A copy of every tensor, with class types and methods of its own, in the
 * compilation unit it shares with m; freeing it removes its methods there. */
gpt_err gpt_module_clone(gpt_module m, gpt_module *out);
gpt_err gpt_module_free(gpt_module m);
gpt_err gpt_live_modules(int64_t *out);
/* How many functions m's compilation unit holds (a diagnostic). */
gpt_err gpt_module_unit_functions(gpt_module m, int64_t *out);
/* The bytes of m's tensors whose pages are out, waiting in m's file since
   a shape-only pass until a call needs them (a diagnostic; 0 when none). */
gpt_err gpt_module_offloaded(gpt_module m, int64_t *out);
gpt_err gpt_module_has_method(gpt_module m, const char *name, int *out);
gpt_err gpt_module_train(gpt_module m, int on);
/* BatchNorm calls in forward (inlined): total, and fixed, those whose training
   flag is a constant (traced), which m's train mode cannot change. */
gpt_err gpt_module_bn_modes(gpt_module m, int *fixed, int *total);
/* on != 0: the module's calls draw the random numbers that no op names a
 * generator for (dropout masks, stochastic depth) from a stream of its own,
 * seeded with seed, on its device; on = 0: from libtorch's process-wide
 * default again. Calls on other modules, at the same time on other
 * threads, draw nothing from it: a module's masks depend on its seed and
 * its own calls only (rng.cc). A clone starts without one. */
gpt_err gpt_module_set_rng(gpt_module m, int on, uint64_t seed);
/* Threads used by calls on this module (0: leave libtorch's setting). */
gpt_err gpt_module_set_threads(gpt_module m, int n);
/* forward(inputs...); the tensor the output setting selects (gpt_set_output). */
gpt_err gpt_module_forward(gpt_module m, const gpt_tensor *inputs, int n,
                           int no_grad, gpt_tensor *out);
/* How the calls that only need shapes run forward (gpt_module_check_forward,
 * gpt_module_export_ir): GPT_PASS_AUTO tries a shape-only pass on libtorch's
 * Meta device (meta.cc) and runs the real pass when that fails,
 * GPT_PASS_REAL runs only the real pass, GPT_PASS_META only the shape-only
 * one (an error when it fails). *meta, when not NULL, is set to 1 when the
 * result came from the shape-only pass. */
enum { GPT_PASS_AUTO = 0, GPT_PASS_REAL = 1, GPT_PASS_META = 2 };
/* Runs forward(inputs...) once under no_grad with the graph optimizer off and
 * drops the result: a check that the model runs. The plain interpreter skips
 * the profiling run and plan compilation that make an optimising executor's
 * first call several times slower than the next. */
gpt_err gpt_module_check_forward(gpt_module m, const gpt_tensor *inputs, int n,
                                 int pass, int *meta);
/* forward(inputs...) giving every tensor of the result in path order: *outs
 * is a malloc'd array of *nouts handles (gpt_free the array, gpt_tensor_free
 * each). When info is not NULL it receives JSON {"structure": "dict(out:
 * tensor, aux: tensor)", "paths": ["out", "aux"], "selected": index into
 * paths or -1, "error": why nothing was selected} (gpt_free). */
gpt_err gpt_module_forward_all(gpt_module m, const gpt_tensor *inputs, int n,
                               int no_grad, gpt_tensor **outs, int *nouts,
                               char **info);
/* Newline-separated dotted names of parameters (buffers=0) or buffers (1). */
gpt_err gpt_module_names(gpt_module m, int buffers, char **out);
/* Newline-separated qualified type names, sorted and unique, of the
 * objects other than modules that the module's attributes hold (custom
 * classes: XNNPACK op contexts, quantized packed weights). */
gpt_err gpt_module_object_types(gpt_module m, char **out);
/* A parameter or buffer, sharing the module's tensor. */
gpt_err gpt_module_get(gpt_module m, const char *name, gpt_tensor *out);
/* A parameter or buffer's values, for reading: the module's tensor, or a
 * copy of it when its bytes wait in the model file (see gpt_module_offloaded),
 * which they go on doing. Writes to the result need not reach the module. */
gpt_err gpt_module_read(gpt_module m, const char *name, gpt_tensor *out);
/* Replace a parameter or buffer by a tensor of any shape; parameters keep
 * requires_grad. */
gpt_err gpt_module_set(gpt_module m, const char *name, gpt_tensor t);
/* Channel surgery in one call. For tensor i (names[i], each named once)
 * the int64 run spec[off[i]:off[i+1]] holds repeated (dim, count,
 * idx[count]) triples, dims ascending, indices ascending, unique and in
 * range: the tensor is index_selected along each dim. Then each op whose
 * weight is conv_names[j] (each named once) takes the size groups[j] >= 1:
 * a conv as its groups, a layer_norm as its normalized_shape [groups[j]],
 * a reshape of the weight to [1, n, -1] or [n, -1] (weight
 * standardisation) as its n. A name "@<entry>@<site>" instead names the
 * view, reshape or split of an activation at that site (the IR's "site"),
 * whose size list takes groups[j] as entry <entry> (a split's part size
 * is entry 0): a channel count the code writes in.
 * Everything is checked before the module changes: a bad slice or name
 * leaves it exactly as it was (*changed = 0). Then each tensor is cut:
 * within its own storage where the module alone holds it (*in_place counts
 * those), otherwise into a new tensor that replaces it at once. An edited
 * forward graph then replaces the old (see replace_forward), so the module
 * runs exactly what a saved copy would. An error after that (memory ran
 * out) sets *changed = 1: the module is half cut and only fit to be freed.
 * changed and in_place may be NULL. */
gpt_err gpt_module_prune(gpt_module m, int ntensors, const char **names,
                         const int64_t *off, const int64_t *spec, int nconvs,
                         const char **conv_names, const int64_t *groups,
                         int *changed, int *in_place);

/* ---- standalone layer timing (optime.cc) ----
 * Times one layer alone on random float inputs under no_grad: kind 0 is
 * at::convolution (x [N,C,spatial...], weight as the module holds it, nsp
 * spatial dims of stride/padding/dilation/out_pad, transposed, groups),
 * kind 1 at::linear (x [..., in], weight [out, in]); bias adds a bias. With
 * threads > 0 the call runs on that many intra-op threads and restores the
 * caller's count. warmup untimed runs, then at least min_runs and at most
 * max_runs timed ones, stopping once budget_ns is spent: times_ns (room for
 * max_runs) gets each run's time, *nruns how many. CUDA runs synchronise. */
gpt_err gpt_op_time(int kind, const int64_t *x_shape, int x_ndim, const int64_t *w_shape, int w_ndim, int bias,
                    const int64_t *stride, const int64_t *padding, const int64_t *dilation,
                    const int64_t *out_pad, int nsp, int transposed, int64_t groups, const char *device,
                    int threads, int warmup, int min_runs, int max_runs, int64_t budget_ns, double *times_ns,
                    int *nruns);

/* ---- model IR (ir.cc) ---- */
/* Traces forward once on inputs (eval mode, no grad) and returns the
 * executed aten ops as "gopruner-ir/1" JSON (see internal/core/ir). The
 * graph's outputs are the result's tensors in path order, and "output" holds
 * the result's structure as gpt_module_forward_all's info gives it. A
 * view, reshape or split that the trace can tell apart in the module's
 * inlined forward carries its "site" there (the source ranges of its call
 * stack). */
gpt_err gpt_module_export_ir(gpt_module m, const gpt_tensor *inputs, int n,
                             int pass, char **json, int *meta);
/* The same trace in training mode, shape-only (Meta device) so that no
 * BatchNorm statistic, random stream or tensor of the module changes; an
 * error when the shape-only pass cannot run. It shows the layers that only
 * training runs (a GoogLeNet's auxiliary classifiers). */
gpt_err gpt_module_export_ir_train(gpt_module m, const gpt_tensor *inputs, int n,
                                   char **json);

/* ---- losses, optimizers, training (train.cc) ---- */
gpt_err gpt_optim_sgd(gpt_module m, double lr, double momentum,
                      double weight_decay, int nesterov, gpt_optim *out);
gpt_err gpt_optim_adam(gpt_module m, double lr, double beta1, double beta2,
                       double eps, double weight_decay, gpt_optim *out);
gpt_err gpt_optim_set_lr(gpt_optim o, double lr);
gpt_err gpt_optim_free(gpt_optim o);
/* One whole training step: zero_grad, forward, cross-entropy, backward,
 * step. Returns the mean loss and the number of correct predictions. */
gpt_err gpt_train_step(gpt_module m, gpt_optim o, gpt_tensor x, gpt_tensor y,
                       double *loss, int64_t *correct);
/* gpt_train_step with knowledge distillation: teacher (left untouched: eval
 * mode, no grad) runs on the same x, and the loss is
 * (1-weight)·CE(s, y) + weight·T²·KL(softmax(t/T) ‖ softmax(s/T)), the KL
 * summed over classes and averaged over the batch, s and t the student's and
 * the teacher's [N, classes] outputs, T = temperature > 0, weight in [0,1].
 * Returns that loss and the student's correct count. */
gpt_err gpt_train_step_distill(gpt_module m, gpt_module teacher, gpt_optim o,
                               gpt_tensor x, gpt_tensor y, double temperature,
                               double weight, double *loss, int64_t *correct);
/* One evaluation batch without grad: summed loss, correct count, and when
 * preds is not NULL the N predicted classes. preds has room for preds_cap
 * values; an error, with nothing written, when the model gives more rows. */
gpt_err gpt_eval_batch(gpt_module m, gpt_tensor x, gpt_tensor y,
                       double *loss_sum, int64_t *correct, int64_t *preds,
                       int64_t preds_cap);
/* One step of re-estimating BatchNorm running statistics: forward on x in
 * training mode without autograd, after which every BatchNorm's statistics
 * are the plain average of the batches of steps 0..step (step 0 replaces
 * them by x's). Training flags and num_batches_tracked are restored; *count
 * receives the number of BatchNorm layers (0: nothing to re-estimate). */
gpt_err gpt_bn_recalibrate_step(gpt_module m, gpt_tensor x, int step, int *count);
/* Taylor first-order scores: forward/backward on one batch with no weight
 * update, then for each named weight accum[i] += sum over all dims but
 * dims[i] of (w * dL/dw)^2 (float64, one value per output channel: dim 0 of
 * a conv or linear weight, dim 1 of a transposed conv's). accum[i] may be
 * NULL on the first call; it is then created. */
gpt_err gpt_taylor_accumulate(gpt_module m, gpt_tensor x, gpt_tensor y, int n,
                              const char **weight_names, const int *dims,
                              gpt_tensor *accum, double *loss);

#ifdef __cplusplus
}
#endif
#endif
