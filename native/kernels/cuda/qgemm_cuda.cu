// y = x · Wᵀ on the device straight from GPTQ-packed 4- or 8-bit weights (W never materialised):
//   W[n, k] = s[g(k), n] · (q(k, n) − z[g(k), n]),   g(k) = g_idx[k]
//   x: (m, in) f32 or f16 row-major;  y: (m, out) f32
//   qweight: (in·bits/32, out) int32 — 32/bits codes of consecutive input channels per word,
//            lowest bits first (4-bit: nibble j = channel 8w + j; 8-bit: byte j = channel 4w + j)
//   scales: (G, out) f32;  zeros: (G, out) uint8 (true zeros);  g_idx: (in) int32
// plus the fp16 GEMM of the same shape (W as (out, in) f16) that the benchmark compares against.
//
// Two kernels, one reduction:
//   qgemv (batch 1, memory-bound): a lane owns 4 consecutive output columns, so one 128-bit load
//     brings one word row of them and a warp reads 512 contiguous bytes; 8 warps of a block split
//     the input dimension and add up in shared memory. Math in f32 in the factored form
//     y += s·(Σ x·q − z·Σ x) per word when groups are runs of input channels (group_size % 8 = 0),
//     per weight (x · s·(q − z)) for a general g_idx (act-order).
//   qgemm_mma (batch ≥ 2): mma.sync m16n8k16, f16 inputs, f32 accumulation. A warp owns 32
//     columns × 16 tokens; per 32-wide k chunk each lane loads one 128-bit word row of its 4
//     columns (the same coalesced pattern as the GEMV) and decodes it in registers to f16 with
//     the 0x6400 trick ((q | 0x6400) as f16 = 1024 + q; minus 1024 + z is exact; one rounding
//     in the multiply by s). The k-permutation of mma.cuh lets one lane use all 8 codes of its
//     word, so no code is loaded twice and no shared memory is needed. The next chunk's words are
//     loaded before the current one is decoded (register double buffering).
//   Both split the input dimension over blockIdx.y when there are too few column tiles to fill
//   the device; partial sums go to a workspace (split, m, out) and a second kernel adds them in
//   split order, so results are deterministic (no atomics).
//   gemm_f16_mma: the same tiling with W read as f16 rows — our own kernel, not cuBLAS (the
//     addon links cudart_static only); the benchmark reports its bandwidth beside a device copy's.
// Tile sizes and split targets are first guesses, to be tuned on a device (docs/CUDA.md).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/mma.cuh"

namespace lowbit {

namespace {

constexpr int MMA_WARPS = 4;  // per block; warp w owns columns [32w, 32w + 32) of the block's 128
constexpr int MMA_COLS = 32 * MMA_WARPS;
constexpr int GEMV_WARPS = 8;   // per block; they split the block's k range
constexpr int GEMV_COLS = 128;  // 32 lanes × 4 columns (one 128-bit load each)

// The words of one lane for physical k [k0, k0 + 8) of its 4 columns.
template <int BITS>
struct Words;
template <>
struct Words<4> {
  uint4 a;  // component i: the word of column i (8 nibbles)
};
template <>
struct Words<8> {
  uint4 a, b;  // a: channels k0..k0+3, b: k0+4..k0+7
};

__device__ __forceinline__ void load_words(const uint32_t* __restrict__ qw, int k0, int in, int out, int n, Words<4>& w) {
  w.a = k0 < in ? load_u32x4(qw + (size_t)(k0 / 8) * out, n, out) : make_uint4(0, 0, 0, 0);
}
__device__ __forceinline__ void load_words(const uint32_t* __restrict__ qw, int k0, int in, int out, int n, Words<8>& w) {
  w.a = k0 < in ? load_u32x4(qw + (size_t)(k0 / 4) * out, n, out) : make_uint4(0, 0, 0, 0);
  w.b = k0 + 4 < in ? load_u32x4(qw + (size_t)(k0 / 4 + 1) * out, n, out) : make_uint4(0, 0, 0, 0);
}

// f16x2 bits of (1024 + q) for register pair p of column i (pairs: mma.cuh).
__device__ __forceinline__ uint32_t pair_bits(const Words<4>& w, int i, int p) { return ((u4_get(w.a, i) >> (4 * p)) & 0x000F000Fu) | 0x64006400u; }
__device__ __forceinline__ uint32_t pair_bits(const Words<8>& w, int i, int p) {
  const uint32_t word = p < 2 ? u4_get(w.a, i) : u4_get(w.b, i);
  return ((word >> (8 * (p & 1))) & 0x00FF00FFu) | 0x64006400u;
}
// Code of physical offset j ∈ [0, 8) of column i, as an exact float.
__device__ __forceinline__ float code_f(const Words<4>& w, int i, int j) {
  return __uint_as_float(0x4B000000u | ((u4_get(w.a, i) >> (4 * j)) & 15u)) - 8388608.0f;
}
__device__ __forceinline__ float code_f(const Words<8>& w, int i, int j) {
  const uint32_t word = j < 4 ? u4_get(w.a, i) : u4_get(w.b, i);
  return __uint_as_float(0x4B000000u | ((word >> (8 * (j & 3))) & 255u)) - 8388608.0f;
}

template <int BITS>
struct PairsOf;
template <>
struct PairsOf<4> {
  using type = PairsInt4;
};
template <>
struct PairsOf<8> {
  using type = PairsInt8;
};

__device__ __forceinline__ uint32_t zero_h2(uint32_t z0, uint32_t z1) { return (0x6400u | z0) | ((0x6400u | z1) << 16); }

// Store one warp's 16 × 32 accumulator tile: tile i, logical column l ↔ physical n0 + 4l + i.
__device__ __forceinline__ void store_tile(const float (&acc)[4][4], float* __restrict__ dst, int m, int out, int m0, int n0, int g, int t) {
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int tok = m0 + g + 8 * h;
      if (tok >= m) continue;
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int n = n0 + 4 * (2 * t + e) + i;
        if (n < out) dst[(size_t)tok * out + n] = acc[i][2 * h + e];
      }
    }
}

template <int BITS, typename XT, bool CONTIG>
__global__ void __launch_bounds__(32 * MMA_WARPS)
    qgemm_mma_kernel(const XT* __restrict__ x, int m, int in, int out, const uint32_t* __restrict__ qw, const float* __restrict__ scales,
                     const uint8_t* __restrict__ zeros, const int32_t* __restrict__ g_idx, int gs, int chunks_per_split, float* __restrict__ dst) {
  using P = typename PairsOf<BITS>::type;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * MMA_COLS + warp * 32;
  const int nq = n0 + 4 * g;  // this lane's 4 B columns: nq .. nq+3
  const int m0 = blockIdx.z * 16;
  const int nchunks = (in + 31) / 32;
  const int c_begin = blockIdx.y * chunks_per_split, c_end = min(nchunks, c_begin + chunks_per_split);
  const XT* xr0 = m0 + g < m ? x + (size_t)(m0 + g) * in : nullptr;
  const XT* xr1 = m0 + g + 8 < m ? x + (size_t)(m0 + g + 8) * in : nullptr;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

  if (n0 < out && c_begin < c_end) {  // warp-uniform: every lane reaches the same mma calls
    Words<BITS> cur;
    load_words(qw, 32 * c_begin + 8 * t, in, out, nq, cur);
    float4 s4 = make_float4(0.f, 0.f, 0.f, 0.f);
    uint32_t z4 = 0;
    int cur_grp = -1;
    for (int c = c_begin; c < c_end; c++) {
      const int k0 = 32 * c + 8 * t;
      Words<BITS> nxt;
      if (c + 1 < c_end) load_words(qw, k0 + 32, in, out, nq, nxt);
      else load_words(qw, in, in, out, nq, nxt);  // zeros
      float xv0[8], xv1[8];
      load_x8(xr0, k0, in, xv0);
      load_x8(xr1, k0, in, xv1);
      uint32_t a[4][2];
#pragma unroll
      for (int p = 0; p < 4; p++) {
        a[p][0] = pack_h2(xv0[P::j0(p)], xv0[P::j1(p)]);
        a[p][1] = pack_h2(xv1[P::j0(p)], xv1[P::j1(p)]);
      }
      if (CONTIG) {
        // group_size % 8 == 0: the lane's 8 channels share one group; reload only when it changes
        if (k0 < in) {
          const int grp = k0 / gs;
          if (grp != cur_grp) {
            s4 = load_f32x4(scales + (size_t)grp * out, nq, out);
            z4 = load_u8x4(zeros + (size_t)grp * out, nq, out);
            cur_grp = grp;
          }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
          const __half2 sh = __float2half2_rn(f4_get(s4, i));
          const uint32_t zi = (z4 >> (8 * i)) & 255u;
          const __half2 zh = bits_h2(zero_h2(zi, zi));
          uint32_t b[4];
#pragma unroll
          for (int p = 0; p < 4; p++) b[p] = h2_bits(__hmul2(__hsub2(bits_h2(pair_bits(cur, i, p)), zh), sh));
          mma_16816(acc[i], a[0][0], a[0][1], a[1][0], a[1][1], b[0], b[1]);
          mma_16816(acc[i], a[2][0], a[2][1], a[3][0], a[3][1], b[2], b[3]);
        }
      } else {
        // general g_idx (act-order): a group per channel
        float4 sj[8];
        uint32_t zj[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
          if (k0 + j < in) {
            const int grp = __ldg(g_idx + k0 + j);
            sj[j] = load_f32x4(scales + (size_t)grp * out, nq, out);
            zj[j] = load_u8x4(zeros + (size_t)grp * out, nq, out);
          } else {
            sj[j] = make_float4(0.f, 0.f, 0.f, 0.f);
            zj[j] = 0;
          }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
          uint32_t b[4];
#pragma unroll
          for (int p = 0; p < 4; p++) {
            const int j0 = P::j0(p), j1 = P::j1(p);
            const __half2 sh = __floats2half2_rn(f4_get(sj[j0], i), f4_get(sj[j1], i));
            const __half2 zh = bits_h2(zero_h2((zj[j0] >> (8 * i)) & 255u, (zj[j1] >> (8 * i)) & 255u));
            b[p] = h2_bits(__hmul2(__hsub2(bits_h2(pair_bits(cur, i, p)), zh), sh));
          }
          mma_16816(acc[i], a[0][0], a[0][1], a[1][0], a[1][1], b[0], b[1]);
          mma_16816(acc[i], a[2][0], a[2][1], a[3][0], a[3][1], b[2], b[3]);
        }
      }
      cur = nxt;
    }
  }
  store_tile(acc, dst + (size_t)blockIdx.y * m * out, m, out, m0, n0, g, t);
}

template <int BITS, typename XT, bool CONTIG>
__global__ void __launch_bounds__(32 * GEMV_WARPS)
    qgemv_kernel(const XT* __restrict__ x, int m, int in, int out, const uint32_t* __restrict__ qw, const float* __restrict__ scales,
                 const uint8_t* __restrict__ zeros, const int32_t* __restrict__ g_idx, int gs, int kgroups_per_split, float* __restrict__ dst) {
  __shared__ float red[GEMV_WARPS][GEMV_COLS];
  const int lane = threadIdx.x, wy = threadIdx.y;
  const int n = blockIdx.x * GEMV_COLS + 4 * lane;
  const int tok = blockIdx.z;
  const int nk = (in + 7) / 8;  // groups of 8 input channels
  const int kb_begin = blockIdx.y * kgroups_per_split, kb_end = min(nk, kb_begin + kgroups_per_split);
  const XT* xr = x + (size_t)tok * in;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  if (n < out) {
    float4 s4 = make_float4(0.f, 0.f, 0.f, 0.f);
    uint32_t z4 = 0;
    int cur_grp = -1;
#pragma unroll 4
    for (int kb = kb_begin + wy; kb < kb_end; kb += GEMV_WARPS) {
      const int k0 = 8 * kb;
      Words<BITS> w;
      load_words(qw, k0, in, out, n, w);
      float xv[8];
      load_x8(xr, k0, in, xv);
      if (CONTIG) {
        const int grp = k0 / gs;
        if (grp != cur_grp) {
          s4 = load_f32x4(scales + (size_t)grp * out, n, out);
          z4 = load_u8x4(zeros + (size_t)grp * out, n, out);
          cur_grp = grp;
        }
        float xs = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) xs += xv[j];
#pragma unroll
        for (int i = 0; i < 4; i++) {
          float dot = 0.f;
#pragma unroll
          for (int j = 0; j < 8; j++) dot = fmaf(xv[j], code_f(w, i, j), dot);
          const float z = (float)((z4 >> (8 * i)) & 255u);
          acc[i] = fmaf(f4_get(s4, i), fmaf(-z, xs, dot), acc[i]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < 8; j++) {
          if (k0 + j >= in) break;
          const int grp = __ldg(g_idx + k0 + j);
          const float4 s = load_f32x4(scales + (size_t)grp * out, n, out);
          const uint32_t z = load_u8x4(zeros + (size_t)grp * out, n, out);
#pragma unroll
          for (int i = 0; i < 4; i++) {
            const float wq = f4_get(s, i) * (code_f(w, i, j) - (float)((z >> (8 * i)) & 255u));
            acc[i] = fmaf(xv[j], wq, acc[i]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; i++) red[wy][4 * lane + i] = acc[i];
  __syncthreads();
  if (wy == 0) {
    float* d = dst + (size_t)blockIdx.y * m * out + (size_t)tok * out;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float s = 0.f;
#pragma unroll
      for (int w = 0; w < GEMV_WARPS; w++) s += red[w][4 * lane + i];  // fixed order: deterministic
      if (n + i < out) d[n + i] = s;
    }
  }
}

__global__ void gemm_f16_mma_kernel(const __half* __restrict__ x, int m, int in, int out, const __half* __restrict__ w, int chunks_per_split,
                                    float* __restrict__ dst) {
  using P = PairsF16;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * MMA_COLS + warp * 32;
  const int nq = n0 + 4 * g;
  const int m0 = blockIdx.z * 16;
  const int nchunks = (in + 31) / 32;
  const int c_begin = blockIdx.y * chunks_per_split, c_end = min(nchunks, c_begin + chunks_per_split);
  const __half* xr0 = m0 + g < m ? x + (size_t)(m0 + g) * in : nullptr;
  const __half* xr1 = m0 + g + 8 < m ? x + (size_t)(m0 + g + 8) * in : nullptr;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  // 8 halves of row n at k0 (in % 8 == 0: 16-byte aligned, fully in or out)
  auto load_row8 = [&](int n, int k0) -> uint4 {
    return n < out && k0 < in ? __ldg(reinterpret_cast<const uint4*>(w + (size_t)n * in + k0)) : make_uint4(0, 0, 0, 0);
  };
  if (n0 < out && c_begin < c_end) {
    uint4 cur[4];
#pragma unroll
    for (int i = 0; i < 4; i++) cur[i] = load_row8(nq + i, 32 * c_begin + 8 * t);
    for (int c = c_begin; c < c_end; c++) {
      const int k0 = 32 * c + 8 * t;
      uint4 nxt[4];
#pragma unroll
      for (int i = 0; i < 4; i++) nxt[i] = c + 1 < c_end ? load_row8(nq + i, k0 + 32) : make_uint4(0, 0, 0, 0);
      float xv0[8], xv1[8];
      load_x8(xr0, k0, in, xv0);
      load_x8(xr1, k0, in, xv1);
      uint32_t a[4][2];
#pragma unroll
      for (int p = 0; p < 4; p++) {
        a[p][0] = pack_h2(xv0[P::j0(p)], xv0[P::j1(p)]);
        a[p][1] = pack_h2(xv1[P::j0(p)], xv1[P::j1(p)]);
      }
#pragma unroll
      for (int i = 0; i < 4; i++) {
        // pairs (0,1) (2,3) (4,5) (6,7) are the uint4's own words
        mma_16816(acc[i], a[0][0], a[0][1], a[1][0], a[1][1], cur[i].x, cur[i].y);
        mma_16816(acc[i], a[2][0], a[2][1], a[3][0], a[3][1], cur[i].z, cur[i].w);
      }
#pragma unroll
      for (int i = 0; i < 4; i++) cur[i] = nxt[i];
    }
  }
  store_tile(acc, dst + (size_t)blockIdx.y * m * out, m, out, m0, n0, g, t);
}

// y[i] = Σ_s ws[s·n + i], in split order.
__global__ void splitk_reduce_kernel(const float* __restrict__ ws, int splits, size_t n, float* __restrict__ y) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float s = 0.f;
  for (int k = 0; k < splits; k++) s += ws[(size_t)k * n + i];
  y[i] = s;
}

__global__ void f32_to_f16_kernel(const float* __restrict__ src, size_t n, __half* __restrict__ dst) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2half_rn(src[i]);
}

struct Plan {
  int kernel = QGEMM_MMA;
  int splits = 1;
  int per_split = 1;  // k units (GEMV: groups of 8 channels; MMA: 32-channel chunks) per split
  dim3 grid, block;
};

// Split the k dimension until there are about `target` blocks (GEMV: 2 per SM of 8 warps; MMA:
// 4 per SM of 4 warps), but leave every warp at least 4 k steps.
Plan make_plan(int kernel, int m, int in, int out, int sms) {
  Plan p;
  p.kernel = kernel == QGEMM_AUTO ? (m == 1 ? QGEMM_GEMV : QGEMM_MMA) : kernel;
  const int colblocks = (out + 127) / 128;
  if (p.kernel == QGEMM_GEMV) {
    const int units = (in + 7) / 8;
    const int base = colblocks * m;
    const int want = std::max(1, (2 * sms + base - 1) / base);
    const int cap = std::max(1, units / (GEMV_WARPS * 4));
    p.per_split = (units + std::min(want, cap) - 1) / std::min(want, cap);
    p.splits = (units + p.per_split - 1) / p.per_split;
    p.grid = dim3(colblocks, p.splits, m);
    p.block = dim3(32, GEMV_WARPS);
  } else {
    const int units = (in + 31) / 32;
    const int base = colblocks * ((m + 15) / 16);
    const int want = std::max(1, (4 * sms + base - 1) / base);
    const int cap = std::max(1, units / 4);
    p.per_split = (units + std::min(want, cap) - 1) / std::min(want, cap);
    p.splits = (units + p.per_split - 1) / p.per_split;
    p.grid = dim3(colblocks, p.splits, (m + 15) / 16);
    p.block = dim3(32 * MMA_WARPS);
  }
  return p;
}

void check_aligned(const void* p, size_t a, const char* what) {
  LOWBIT_CHECK(reinterpret_cast<uintptr_t>(p) % a == 0, std::string(what) + " must be " + std::to_string(a) + "-byte aligned");
}

template <int BITS, typename XT>
void launch_q(const QgemmCudaArgs& a, const Plan& p, float* dst, cudaStream_t s) {
  const XT* x = static_cast<const XT*>(a.x);
  const uint32_t* qw = reinterpret_cast<const uint32_t*>(a.qweight);
  if (p.kernel == QGEMM_GEMV) {
    if (a.group_size > 0)
      qgemv_kernel<BITS, XT, true><<<p.grid, p.block, 0, s>>>(x, a.m, a.in, a.out, qw, a.scales, a.zeros, a.g_idx, a.group_size, p.per_split, dst);
    else qgemv_kernel<BITS, XT, false><<<p.grid, p.block, 0, s>>>(x, a.m, a.in, a.out, qw, a.scales, a.zeros, a.g_idx, 0, p.per_split, dst);
  } else {
    if (a.group_size > 0)
      qgemm_mma_kernel<BITS, XT, true>
          <<<p.grid, p.block, 0, s>>>(x, a.m, a.in, a.out, qw, a.scales, a.zeros, a.g_idx, a.group_size, p.per_split, dst);
    else qgemm_mma_kernel<BITS, XT, false><<<p.grid, p.block, 0, s>>>(x, a.m, a.in, a.out, qw, a.scales, a.zeros, a.g_idx, 0, p.per_split, dst);
  }
  CUDA_CHECK_LAUNCH();
}

void reduce_splits(const Plan& p, const float* ws, int m, int out, float* y, cudaStream_t s) {
  const size_t n = (size_t)m * out;
  splitk_reduce_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(ws, p.splits, n, y);
  CUDA_CHECK_LAUNCH();
}

// Host-side argument checks shared by the host and device entry points (no device call).
void check_qgemm_shape(int m, int in, int out, int bits, int x_dtype, int groups, int kernel) {
  if (bits != 4 && bits != 8) throw Error("LOWBIT_UNSUPPORTED", "qgemm CUDA: bits must be 4 or 8, got " + std::to_string(bits));
  if (m < 1 || in < 1 || out < 1 || groups < 1)
    throw Error("LOWBIT_SHAPE_MISMATCH", "qgemm CUDA: m, in, out, groups must be positive, got m " + std::to_string(m) + ", in " +
                                             std::to_string(in) + ", out " + std::to_string(out) + ", groups " + std::to_string(groups));
  const int word = 32 / bits;
  if (in % word != 0 || in % 4 != 0)
    throw Error("LOWBIT_SHAPE_MISMATCH",
                "qgemm CUDA: in_features " + std::to_string(in) + " is not a multiple of " + std::to_string(std::max(word, 4)));
  if (x_dtype != CUDA_F32 && x_dtype != CUDA_F16) throw Error("LOWBIT_INTERNAL", "qgemm CUDA: x dtype must be 0 (f32) or 1 (f16)");
  if (kernel < QGEMM_AUTO || kernel > QGEMM_MMA) throw Error("LOWBIT_INTERNAL", "qgemm CUDA: kernel must be 0 (auto), 1 (gemv) or 2 (mma)");
  // grid.z carries the tokens (GEMV: one each; MMA: 16 each) and is limited to 65535
  const bool gemv = kernel == QGEMM_GEMV || (kernel == QGEMM_AUTO && m == 1);
  if (gemv ? m > 65535 : (m + 15) / 16 > 65535)
    throw Error("LOWBIT_UNSUPPORTED", "qgemm CUDA: " + std::to_string(m) + " tokens is above the " +
                                          (gemv ? "GEMV kernel's 65535" : "MMA kernel's 1048560") + "; split the batch");
}

}  // namespace

int qgemm_cuda_group_size(const int32_t* g_idx, int in, int groups) {
  for (int k = 0; k < in; k++)
    if (g_idx[k] < 0 || g_idx[k] >= groups)
      throw Error("LOWBIT_BAD_FORMAT",
                  "g_idx[" + std::to_string(k) + "] = " + std::to_string(g_idx[k]) + " is outside [0, " + std::to_string(groups) + ")");
  int gs = 0;
  while (gs < in && g_idx[gs] == 0) gs++;
  if (gs == 0 || gs % 8 != 0) return 0;
  for (int k = 0; k < in; k++)
    if (g_idx[k] != k / gs) return 0;
  return gs;
}

size_t qgemm_gptq_cuda_workspace_floats(int m, int in, int out, int kernel) {
  const Plan p = make_plan(kernel, m, in, out, cuda_sm_count());
  return p.splits > 1 ? (size_t)p.splits * m * out : 0;
}

void qgemm_gptq_cuda_launch(const QgemmCudaArgs& a, void* stream) {
  check_qgemm_shape(a.m, a.in, a.out, a.bits, a.x_dtype, a.groups, a.kernel);
  LOWBIT_CHECK(a.group_size == 0 || a.group_size % 8 == 0, "qgemm CUDA: group_size must be 0 (general g_idx) or a multiple of 8");
  check_aligned(a.x, 16, "x");
  check_aligned(a.qweight, 16, "qweight");
  check_aligned(a.scales, 16, "scales");
  check_aligned(a.zeros, 4, "zeros");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Plan p = make_plan(a.kernel, a.m, a.in, a.out, cuda_sm_count());
  float* dst = a.y;
  if (p.splits > 1) {
    LOWBIT_CHECK(a.workspace && a.workspace_floats >= (size_t)p.splits * a.m * a.out, "qgemm CUDA: workspace too small");
    dst = a.workspace;
  }
  if (a.bits == 4) {
    if (a.x_dtype == CUDA_F32) launch_q<4, float>(a, p, dst, s);
    else launch_q<4, __half>(a, p, dst, s);
  } else {
    if (a.x_dtype == CUDA_F32) launch_q<8, float>(a, p, dst, s);
    else launch_q<8, __half>(a, p, dst, s);
  }
  if (p.splits > 1) reduce_splits(p, a.workspace, a.m, a.out, a.y, s);
}

size_t gemm_f16_cuda_workspace_floats(int m, int in, int out) {
  const Plan p = make_plan(QGEMM_MMA, m, in, out, cuda_sm_count());
  return p.splits > 1 ? (size_t)p.splits * m * out : 0;
}

void gemm_f16_cuda_launch(const void* x, const void* w, int m, int in, int out, float* y, float* workspace, size_t workspace_floats, void* stream) {
  LOWBIT_CHECK(m >= 1 && out >= 1 && in >= 8 && in % 8 == 0, "gemm f16 CUDA: in must be a positive multiple of 8");
  check_aligned(x, 16, "x");
  check_aligned(w, 16, "w");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Plan p = make_plan(QGEMM_MMA, m, in, out, cuda_sm_count());
  float* dst = y;
  if (p.splits > 1) {
    LOWBIT_CHECK(workspace && workspace_floats >= (size_t)p.splits * m * out, "gemm f16 CUDA: workspace too small");
    dst = workspace;
  }
  gemm_f16_mma_kernel<<<p.grid, p.block, 0, s>>>(static_cast<const __half*>(x), m, in, out, static_cast<const __half*>(w), p.per_split, dst);
  CUDA_CHECK_LAUNCH();
  if (p.splits > 1) reduce_splits(p, workspace, m, out, y, s);
}

CudaRunStats qgemm_gptq_cuda(const QgemmHostArgs& a, int kernel, int warmup, int repeats, bool cold) {
  // every check that needs no device comes first
  check_qgemm_shape(a.m, a.in, a.out, a.bits, a.x_dtype, a.groups, kernel);
  if (repeats < 1 || warmup < 0) throw Error("LOWBIT_INTERNAL", "qgemm CUDA: repeats must be ≥ 1 and warmup ≥ 0");
  const int gs = qgemm_cuda_group_size(a.g_idx, a.in, a.groups);
  cuda_require_device();

  CudaRunStats st;
  DevMemCounter mem;
  const size_t nx = (size_t)a.m * a.in, nw = (size_t)a.in * a.bits / 32 * a.out, ns = (size_t)a.groups * a.out, ny = (size_t)a.m * a.out;
  const size_t xbytes = nx * (a.x_dtype == CUDA_F16 ? 2 : 4);
  DevBuf<uint8_t> dx(xbytes, &mem);
  DevBuf<int32_t> dq(nw, &mem), dg(a.in, &mem);
  DevBuf<float> ds(ns, &mem), dy(ny, &mem);
  DevBuf<uint8_t> dz(ns, &mem);
  CUDA_CHECK(cudaMemcpy(dx.get(), a.x, xbytes, cudaMemcpyHostToDevice));
  dq.upload(a.qweight, nw);
  dg.upload(a.g_idx, a.in);
  ds.upload(a.scales, ns);
  dz.upload(a.zeros, ns);
  const Plan p = make_plan(kernel, a.m, a.in, a.out, cuda_sm_count());
  DevBuf<float> ws(p.splits > 1 ? (size_t)p.splits * ny : 0, &mem);
  QgemmCudaArgs d;
  d.x = dx.get();
  d.x_dtype = a.x_dtype;
  d.m = a.m;
  d.in = a.in;
  d.out = a.out;
  d.bits = a.bits;
  d.qweight = dq.get();
  d.scales = ds.get();
  d.zeros = dz.get();
  d.g_idx = dg.get();
  d.groups = a.groups;
  d.group_size = gs;
  d.y = dy.get();
  d.workspace = ws.get();
  d.workspace_floats = ws.size();
  d.kernel = kernel;
  L2Flusher l2(cold);  // not counted in device_bytes: it is the benchmark's, not the kernel's
  EventTimer timer;
  for (int i = 0; i < warmup; i++) qgemm_gptq_cuda_launch(d, nullptr);
  for (int i = 0; i < repeats; i++) {
    l2.flush();
    timer.start();
    qgemm_gptq_cuda_launch(d, nullptr);
    st.ms.push_back(timer.stop());
  }
  dy.download(a.y, ny);
  st.device_bytes = mem.peak;
  st.kernel = p.kernel;
  st.splits = p.splits;
  st.group_size = gs;
  return st;
}

CudaRunStats gemm_f16_cuda(const float* x, const float* w, int m, int in, int out, float* y, int warmup, int repeats, bool cold) {
  if (m < 1 || out < 1 || in < 8 || in % 8 != 0)
    throw Error("LOWBIT_SHAPE_MISMATCH", "gemm f16 CUDA: expected m, out ≥ 1 and in a positive multiple of 8, got m " + std::to_string(m) + ", in " +
                                             std::to_string(in) + ", out " + std::to_string(out));
  if (repeats < 1 || warmup < 0) throw Error("LOWBIT_INTERNAL", "gemm f16 CUDA: repeats must be ≥ 1 and warmup ≥ 0");
  cuda_require_device();
  CudaRunStats st;
  DevMemCounter mem;
  const size_t nx = (size_t)m * in, nw = (size_t)out * in, ny = (size_t)m * out;
  DevBuf<__half> hx(nx, &mem), hw(nw, &mem);
  {
    // f32 → f16 on the device (round to nearest even), one input at a time to bound the peak
    DevBuf<float> tmp(std::max(nx, nw), &mem);
    tmp.upload(x, nx);
    f32_to_f16_kernel<<<(unsigned)((nx + 255) / 256), 256>>>(tmp.get(), nx, hx.get());
    CUDA_CHECK_LAUNCH();
    tmp.upload(w, nw);  // cudaMemcpy waits for the kernel above (same legacy stream)
    f32_to_f16_kernel<<<(unsigned)((nw + 255) / 256), 256>>>(tmp.get(), nw, hw.get());
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  DevBuf<float> dy(ny, &mem);
  const Plan p = make_plan(QGEMM_MMA, m, in, out, cuda_sm_count());
  DevBuf<float> ws(p.splits > 1 ? (size_t)p.splits * ny : 0, &mem);
  L2Flusher l2(cold);
  EventTimer timer;
  for (int i = 0; i < warmup; i++) gemm_f16_cuda_launch(hx.get(), hw.get(), m, in, out, dy.get(), ws.get(), ws.size(), nullptr);
  for (int i = 0; i < repeats; i++) {
    l2.flush();
    timer.start();
    gemm_f16_cuda_launch(hx.get(), hw.get(), m, in, out, dy.get(), ws.get(), ws.size(), nullptr);
    st.ms.push_back(timer.stop());
  }
  dy.download(y, ny);
  st.device_bytes = mem.peak;
  st.kernel = QGEMM_MMA;
  st.splits = p.splits;
  return st;
}

std::vector<float> copy_bench_cuda(size_t bytes, int repeats) {
  if (bytes == 0 || repeats < 1) throw Error("LOWBIT_INTERNAL", "copy bench CUDA: bytes and repeats must be positive");
  cuda_require_device();
  DevBuf<uint8_t> a(bytes), b(bytes);
  CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
  EventTimer timer;
  std::vector<float> ms;
  CUDA_CHECK(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));  // warm-up
  for (int i = 0; i < repeats; i++) {
    timer.start();
    CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, 0));
    ms.push_back(timer.stop());
  }
  return ms;
}

}  // namespace lowbit
