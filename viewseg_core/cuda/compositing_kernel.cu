// Fused volume-rendering compositing (forward and backward), one warp per ray.
//
// Computes exactly the quadrature of viewseg_core/volrend.py (composite_reference):
//   delta_i = t_{i+1} - t_i (last: far - t_last, or last_delta), clamped at 0
//   tau_i = sigma_i delta_i,  T_i = exp(-sum_{j<i} tau_j),  w_i = T_i * (-expm1(-tau_i))
//   out_c = sum_i w_i v_ic,  opacity = -expm1(-sum_i tau_i),  dist = sum_i w_i t_i
//
// Layout: sigma, t [R, S]; values [R, S, C]; far [R] (optional); all contiguous, one dtype.
// Accumulation is in at::opmath_type (float for half/bfloat16/float, double for double).
//
// Work split: a warp owns one ray. Weights come from a warp-wide prefix scan of tau over
// chunks of 32 samples and are staged in shared memory; the channel sums then read
// `values` with consecutive lanes on consecutive addresses (coalesced):
//   C <= 32: lane l handles channel l % C of samples l / C, l / C + 32 / C, ... and lanes
//            holding the same channel are summed at the end (fixed order: deterministic);
//   C  > 32: lanes take 32 channels at a time and loop over samples.
//
// Backward (L = loss, g_i = dL/dw_i = sum_c gout_c v_ic + gw_i + gdist t_i + gopacity):
//   dL/dtau_k = g_k T_{k+1} - sum_{i>k} g_i w_i
//   dL/dsigma_k = dL/dtau_k delta_k,  dL/ddelta_k = dL/dtau_k sigma_k
//   dL/dt_k = gdist w_k + dL/ddelta_{k-1} - dL/ddelta_k  (no last term without far)
//   dL/dfar = dL/ddelta_last (with far),  dL/dv_ic = gout_c w_i
// The suffix sum uses total - inclusive prefix, both from one warp scan.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kMaxWarpsPerBlock = 4;
constexpr size_t kMaxSharedBytes = 48 * 1024;  // no opt-in needed below this

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float expm1_(float x) { return expm1f(x); }
__device__ __forceinline__ double expm1_(double x) { return expm1(x); }

template <typename T>
__device__ __forceinline__ T warp_inclusive_scan(T x, int lane) {
#pragma unroll
  for (int offset = 1; offset < kWarp; offset <<= 1) {
    T y = __shfl_up_sync(kFullMask, x, offset);
    if (lane >= offset) x += y;
  }
  return x;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

// Interval length of sample s; `raw_ok` is false when the clamp at 0 was active (no grad).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t sample_delta(const scalar_t* t_r, int s, int S, acc_t ts,
                                              bool has_far, acc_t far_r, acc_t last_delta,
                                              bool* raw_ok) {
  acc_t raw;
  if (s + 1 < S) {
    raw = static_cast<acc_t>(t_r[s + 1]) - ts;
  } else {
    raw = has_far ? far_r - ts : last_delta;
  }
  *raw_ok = raw >= acc_t(0);
  return *raw_ok ? raw : acc_t(0);
}

template <typename scalar_t>
__global__ void composite_forward_kernel(const scalar_t* __restrict__ sigma,
                                         const scalar_t* __restrict__ t,
                                         const scalar_t* __restrict__ values,
                                         const scalar_t* __restrict__ far,
                                         scalar_t* __restrict__ out,
                                         scalar_t* __restrict__ weights,
                                         scalar_t* __restrict__ opacity,
                                         scalar_t* __restrict__ dist_sum,
                                         int64_t R, int S, int C, double last_delta_d) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(sizeof(double)) unsigned char smem_raw[];
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int64_t ray = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp;
  if (ray >= R) return;  // uniform per warp; no block-level barrier below

  acc_t* w_sh = reinterpret_cast<acc_t*>(smem_raw) + static_cast<size_t>(warp) * (S + kWarp);
  acc_t* scratch = w_sh + S;
  const scalar_t* sig_r = sigma + ray * S;
  const scalar_t* t_r = t + ray * S;
  const scalar_t* v_r = values + ray * static_cast<int64_t>(S) * C;
  const bool has_far = far != nullptr;
  const acc_t far_r = has_far ? static_cast<acc_t>(far[ray]) : acc_t(0);
  const acc_t last_delta = static_cast<acc_t>(last_delta_d);

  // Phase 1: weights (lane = sample within a chunk of 32).
  acc_t carry = 0;  // sum of tau over earlier chunks
  acc_t dist_acc = 0;
  for (int base = 0; base < S; base += kWarp) {
    const int s = base + lane;
    acc_t tau = 0, ts = 0;
    if (s < S) {
      ts = static_cast<acc_t>(t_r[s]);
      bool ok;
      const acc_t delta = sample_delta(t_r, s, S, ts, has_far, far_r, last_delta, &ok);
      tau = static_cast<acc_t>(sig_r[s]) * delta;
    }
    const acc_t incl = warp_inclusive_scan(tau, lane);
    acc_t excl = __shfl_up_sync(kFullMask, incl, 1);
    if (lane == 0) excl = 0;
    if (s < S) {
      const acc_t w = exp_(-(carry + excl)) * (-expm1_(-tau));
      w_sh[s] = w;
      weights[ray * S + s] = static_cast<scalar_t>(w);
      dist_acc += w * ts;
    }
    carry += __shfl_sync(kFullMask, incl, kWarp - 1);
  }
  dist_acc = warp_sum(dist_acc);
  if (lane == 0) {
    opacity[ray] = static_cast<scalar_t>(-expm1_(-carry));
    dist_sum[ray] = static_cast<scalar_t>(dist_acc);
  }
  __syncwarp();

  // Phase 2: channels.
  scalar_t* out_r = out + ray * C;
  if (C > 0 && C <= kWarp) {
    const int group = kWarp / C;  // samples read side by side
    acc_t acc = 0;
    if (lane < group * C) {
      const int c = lane % C;
      for (int s = lane / C; s < S; s += group) {
        acc += w_sh[s] * static_cast<acc_t>(v_r[static_cast<int64_t>(s) * C + c]);
      }
    }
    scratch[lane] = acc;
    __syncwarp();
    if (lane < C) {
      acc_t total = 0;
      for (int j = 0; j < group; ++j) total += scratch[j * C + lane];
      out_r[lane] = static_cast<scalar_t>(total);
    }
  } else if (C > kWarp) {
    for (int c0 = 0; c0 < C; c0 += kWarp) {
      const int c = c0 + lane;
      if (c < C) {
        acc_t acc = 0;
        for (int s = 0; s < S; ++s) acc += w_sh[s] * static_cast<acc_t>(v_r[static_cast<int64_t>(s) * C + c]);
        out_r[c] = static_cast<scalar_t>(acc);
      }
    }
  }
}

template <typename scalar_t>
__global__ void composite_backward_kernel(const scalar_t* __restrict__ sigma,
                                          const scalar_t* __restrict__ t,
                                          const scalar_t* __restrict__ values,
                                          const scalar_t* __restrict__ far,
                                          const scalar_t* __restrict__ grad_out,
                                          const scalar_t* __restrict__ grad_weights,
                                          const scalar_t* __restrict__ grad_opacity,
                                          const scalar_t* __restrict__ grad_dist,
                                          scalar_t* __restrict__ grad_sigma,
                                          scalar_t* __restrict__ grad_t,
                                          scalar_t* __restrict__ grad_values,  // may be null
                                          scalar_t* __restrict__ grad_far,     // may be null
                                          int64_t R, int S, int C, double last_delta_d) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(sizeof(double)) unsigned char smem_raw[];
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int64_t ray = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp;
  if (ray >= R) return;

  acc_t* go_sh = reinterpret_cast<acc_t*>(smem_raw) + static_cast<size_t>(warp) * (C + 4 * S);
  acc_t* w_sh = go_sh + C;   // w_i
  acc_t* g_sh = w_sh + S;    // dL/dw_i
  acc_t* tn_sh = g_sh + S;   // T_{i+1}
  acc_t* p_sh = tn_sh + S;   // inclusive prefix of g_i w_i
  const scalar_t* sig_r = sigma + ray * S;
  const scalar_t* t_r = t + ray * S;
  const scalar_t* v_r = values + ray * static_cast<int64_t>(S) * C;
  const bool has_far = far != nullptr;
  const acc_t far_r = has_far ? static_cast<acc_t>(far[ray]) : acc_t(0);
  const acc_t last_delta = static_cast<acc_t>(last_delta_d);
  const acc_t g_op = static_cast<acc_t>(grad_opacity[ray]);
  const acc_t g_dist = static_cast<acc_t>(grad_dist[ray]);

  for (int c = lane; c < C; c += kWarp) go_sh[c] = static_cast<acc_t>(grad_out[ray * C + c]);
  __syncwarp();

  // Phase 1: recompute weights; g_i and the prefix of g_i w_i.
  acc_t carry_tau = 0, carry_gw = 0;
  for (int base = 0; base < S; base += kWarp) {
    const int s = base + lane;
    acc_t tau = 0, ts = 0;
    if (s < S) {
      ts = static_cast<acc_t>(t_r[s]);
      bool ok;
      const acc_t delta = sample_delta(t_r, s, S, ts, has_far, far_r, last_delta, &ok);
      tau = static_cast<acc_t>(sig_r[s]) * delta;
    }
    const acc_t incl = warp_inclusive_scan(tau, lane);
    acc_t excl = __shfl_up_sync(kFullMask, incl, 1);
    if (lane == 0) excl = 0;
    acc_t gw = 0;
    if (s < S) {
      const acc_t w = exp_(-(carry_tau + excl)) * (-expm1_(-tau));
      acc_t g = static_cast<acc_t>(grad_weights[ray * S + s]) + g_dist * ts + g_op;
      const scalar_t* v_s = v_r + static_cast<int64_t>(s) * C;
      for (int c = 0; c < C; ++c) g += go_sh[c] * static_cast<acc_t>(v_s[c]);
      w_sh[s] = w;
      g_sh[s] = g;
      tn_sh[s] = exp_(-(carry_tau + incl));
      gw = g * w;
    }
    const acc_t gw_incl = warp_inclusive_scan(gw, lane);
    if (s < S) p_sh[s] = carry_gw + gw_incl;
    carry_tau += __shfl_sync(kFullMask, incl, kWarp - 1);
    carry_gw += __shfl_sync(kFullMask, gw_incl, kWarp - 1);
  }
  const acc_t total_gw = carry_gw;
  __syncwarp();

  // Phase 2: sigma, t and far gradients (lane = sample).
  acc_t carry_dd = 0;  // dL/ddelta of the previous chunk's last sample
  for (int base = 0; base < S; base += kWarp) {
    const int s = base + lane;
    acc_t dd = 0, gt = 0;
    if (s < S) {
      const acc_t ts = static_cast<acc_t>(t_r[s]);
      const acc_t sig = static_cast<acc_t>(sig_r[s]);
      bool ok;
      const acc_t delta = sample_delta(t_r, s, S, ts, has_far, far_r, last_delta, &ok);
      const acc_t dtau = g_sh[s] * tn_sh[s] - (total_gw - p_sh[s]);
      grad_sigma[ray * S + s] = static_cast<scalar_t>(dtau * delta);
      const bool depends_on_t = s + 1 < S || has_far;
      dd = (ok && depends_on_t) ? dtau * sig : acc_t(0);
      gt = g_dist * w_sh[s] - dd;
      if (s == S - 1 && grad_far != nullptr) grad_far[ray] = static_cast<scalar_t>(dd);
    }
    acc_t dd_prev = __shfl_up_sync(kFullMask, dd, 1);
    if (lane == 0) dd_prev = carry_dd;
    if (s < S) grad_t[ray * S + s] = static_cast<scalar_t>(gt + dd_prev);
    carry_dd = __shfl_sync(kFullMask, dd, kWarp - 1);
  }

  // Phase 3: value gradients, flat and coalesced.
  if (grad_values != nullptr) {
    scalar_t* gv_r = grad_values + ray * static_cast<int64_t>(S) * C;
    const int n = S * C;
    for (int e = lane; e < n; e += kWarp) {
      const int s = e / C;
      gv_r[e] = static_cast<scalar_t>(go_sh[e - s * C] * w_sh[s]);
    }
  }
}

void check_inputs(const at::Tensor& sigma, const at::Tensor& t, const at::Tensor& values,
                  const std::optional<at::Tensor>& far) {
  TORCH_CHECK(sigma.is_cuda() && t.is_cuda() && values.is_cuda(), "composite: inputs must be CUDA tensors");
  TORCH_CHECK(sigma.dim() == 2 && t.sizes() == sigma.sizes(), "composite: sigma and t must both be [R, S]");
  TORCH_CHECK(values.dim() == 3 && values.size(0) == sigma.size(0) && values.size(1) == sigma.size(1),
              "composite: values must be [R, S, C]");
  TORCH_CHECK(sigma.size(1) >= 1, "composite: need at least one sample per ray");
  TORCH_CHECK(t.scalar_type() == sigma.scalar_type() && values.scalar_type() == sigma.scalar_type(),
              "composite: sigma, t and values must share one dtype");
  TORCH_CHECK(sigma.is_contiguous() && t.is_contiguous() && values.is_contiguous(),
              "composite: inputs must be contiguous");
  TORCH_CHECK(sigma.size(1) * values.size(2) < (int64_t(1) << 31), "composite: S * C too large");
  if (far.has_value()) {
    TORCH_CHECK(far->is_cuda() && far->dim() == 1 && far->size(0) == sigma.size(0) && far->is_contiguous() &&
                    far->scalar_type() == sigma.scalar_type(),
                "composite: far must be a contiguous [R] CUDA tensor of the inputs' dtype");
  }
}

// Warps per block so that the block's shared memory fits the default 48 KiB.
int warps_per_block(size_t bytes_per_warp) {
  TORCH_CHECK(bytes_per_warp <= kMaxSharedBytes,
              "composite: too many samples/channels per ray for the fused kernel's shared memory (",
              bytes_per_warp, " bytes per ray); use the PyTorch reference (VIEWSEG_COMPOSITING=reference)");
  return static_cast<int>(std::min<size_t>(kMaxWarpsPerBlock, kMaxSharedBytes / bytes_per_warp));
}

}  // namespace

std::vector<at::Tensor> composite_forward_cuda(const at::Tensor& sigma, const at::Tensor& t,
                                               const at::Tensor& values,
                                               const std::optional<at::Tensor>& far,
                                               double last_delta) {
  check_inputs(sigma, t, values, far);
  const c10::cuda::CUDAGuard guard(sigma.device());
  const int64_t R = sigma.size(0);
  const int S = static_cast<int>(sigma.size(1));
  const int C = static_cast<int>(values.size(2));
  auto out = at::empty({R, C}, sigma.options());
  auto weights = at::empty({R, S}, sigma.options());
  auto opacity = at::empty({R}, sigma.options());
  auto dist = at::empty({R}, sigma.options());
  if (R == 0) return {out, weights, opacity, dist};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, sigma.scalar_type(),
                                  "composite_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t per_warp = sizeof(acc_t) * (static_cast<size_t>(S) + kWarp);
    const int wpb = warps_per_block(per_warp);
    const int64_t blocks = (R + wpb - 1) / wpb;
    TORCH_CHECK(blocks < (int64_t(1) << 31), "composite: too many rays for one launch");
    composite_forward_kernel<scalar_t><<<static_cast<unsigned>(blocks), wpb * kWarp, per_warp * wpb,
                                         c10::cuda::getCurrentCUDAStream()>>>(
        sigma.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(),
        far.has_value() ? far->data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(),
        weights.data_ptr<scalar_t>(), opacity.data_ptr<scalar_t>(), dist.data_ptr<scalar_t>(), R, S, C,
        last_delta);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, weights, opacity, dist};
}

std::vector<at::Tensor> composite_backward_cuda(const at::Tensor& sigma, const at::Tensor& t,
                                                const at::Tensor& values,
                                                const std::optional<at::Tensor>& far,
                                                const at::Tensor& grad_out, const at::Tensor& grad_weights,
                                                const at::Tensor& grad_opacity, const at::Tensor& grad_dist,
                                                bool need_values_grad, bool need_far_grad,
                                                double last_delta) {
  check_inputs(sigma, t, values, far);
  const int64_t R = sigma.size(0);
  const int S = static_cast<int>(sigma.size(1));
  const int C = static_cast<int>(values.size(2));
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({R, C}) && grad_weights.sizes() == sigma.sizes() &&
                  grad_opacity.sizes() == at::IntArrayRef({R}) && grad_dist.sizes() == at::IntArrayRef({R}),
              "composite backward: gradient shapes do not match the outputs");
  for (const auto* g : {&grad_out, &grad_weights, &grad_opacity, &grad_dist}) {
    TORCH_CHECK(g->is_cuda() && g->is_contiguous() && g->scalar_type() == sigma.scalar_type(),
                "composite backward: gradients must be contiguous CUDA tensors of the inputs' dtype");
  }
  const c10::cuda::CUDAGuard guard(sigma.device());
  auto grad_sigma = at::empty_like(sigma);
  auto grad_t = at::empty_like(t);
  at::Tensor grad_values = need_values_grad ? at::empty_like(values) : at::Tensor();
  at::Tensor grad_far = (need_far_grad && far.has_value()) ? at::empty_like(*far) : at::Tensor();
  if (R == 0) return {grad_sigma, grad_t, grad_values, grad_far};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, sigma.scalar_type(),
                                  "composite_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t per_warp = sizeof(acc_t) * (static_cast<size_t>(C) + 4 * static_cast<size_t>(S));
    const int wpb = warps_per_block(per_warp);
    const int64_t blocks = (R + wpb - 1) / wpb;
    TORCH_CHECK(blocks < (int64_t(1) << 31), "composite: too many rays for one launch");
    composite_backward_kernel<scalar_t><<<static_cast<unsigned>(blocks), wpb * kWarp, per_warp * wpb,
                                          c10::cuda::getCurrentCUDAStream()>>>(
        sigma.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(),
        far.has_value() ? far->data_ptr<scalar_t>() : nullptr, grad_out.data_ptr<scalar_t>(),
        grad_weights.data_ptr<scalar_t>(), grad_opacity.data_ptr<scalar_t>(), grad_dist.data_ptr<scalar_t>(),
        grad_sigma.data_ptr<scalar_t>(), grad_t.data_ptr<scalar_t>(),
        grad_values.defined() ? grad_values.data_ptr<scalar_t>() : nullptr,
        grad_far.defined() ? grad_far.data_ptr<scalar_t>() : nullptr, R, S, C, last_delta);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_sigma, grad_t, grad_values, grad_far};
}
