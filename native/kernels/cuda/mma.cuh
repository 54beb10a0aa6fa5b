// Tensor-core and packing helpers shared by the matmul kernels (sm_80+).
//
// mma.sync.m16n8k16.row.col.f32.f16.f16.f32, per lane (g = lane / 4, t = lane % 4), PTX ISA
// "Matrix fragments for mma.m16n8k16 with floating point type":
//   A (16×16, row): a0 = (row g,   k 2t..2t+1)  a1 = (row g+8, k 2t..2t+1)
//                   a2 = (row g,   k 2t+8..+9)  a3 = (row g+8, k 2t+8..+9)
//   B (16×8, col):  b0 = (k 2t..2t+1, col g)    b1 = (k 2t+8..2t+9, col g)
//   C (16×8, f32):  c0, c1 = (row g, cols 2t, 2t+1)   c2, c3 = (row g+8, cols 2t, 2t+1)
// Each 32-bit register holds two f16, the lower k (or column) in the low half.
//
// The k-permutation trick used by every kernel here: Σ_k A[m,k]·B[k,n] does not depend on the
// order of k, so the "logical" k positions of one mma may stand for any 16 physical k positions
// as long as A and B use the same map. Lane t owns the physical k run [8t, 8t+8) of a 32-wide
// chunk (two mmas); `Pairs` says which two physical offsets j0, j1 ∈ [0, 8) fill each register:
// pair 0 → (mma 0, logical 2t..2t+1), pair 1 → (mma 0, 2t+8..2t+9), pair 2 → (mma 1, 2t..2t+1),
// pair 3 → (mma 1, 2t+8..2t+9). The pairs are chosen so the weight format decodes cheaply:
//   int4 word (8 nibbles, low first): (0,4) (1,5) (2,6) (3,7) — (w >> 4p) & 0x000F000F
//   int8 words (2 × 4 bytes):          (0,2) (1,3) (4,6) (5,7) — (w >> 8p') & 0x00FF00FF
//   f16 (8 halves in a uint4):         (0,1) (2,3) (4,5) (6,7) — the uint4's own words
#pragma once
#include <cuda_fp16.h>
#include <cstdint>
#include <cstring>

namespace lowbit {

__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  // Never built: CMakeLists compiles sm_80 and newer only. Trap so a wrong build cannot pass.
  (void)d;
  (void)a0;
  (void)a1;
  (void)a2;
  (void)a3;
  (void)b0;
  (void)b1;
  __trap();
#endif
}

__device__ __forceinline__ uint32_t h2_bits(__half2 h) {
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}
__device__ __forceinline__ __half2 bits_h2(uint32_t u) {
  __half2 h;
  memcpy(&h, &u, 4);
  return h;
}
// Two floats → one f16x2 register (round to nearest even), lo in the low half.
__device__ __forceinline__ uint32_t pack_h2(float lo, float hi) { return h2_bits(__floats2half2_rn(lo, hi)); }

// Physical offsets (j0, j1) of each of the 4 register pairs (see the file comment).
struct PairsInt4 {
  __device__ static constexpr int j0(int p) { return p; }
  __device__ static constexpr int j1(int p) { return p + 4; }
};
struct PairsInt8 {
  __device__ static constexpr int j0(int p) { return p < 2 ? p : p + 2; }
  __device__ static constexpr int j1(int p) { return p < 2 ? p + 2 : p + 4; }
};
struct PairsF16 {
  __device__ static constexpr int j0(int p) { return 2 * p; }
  __device__ static constexpr int j1(int p) { return 2 * p + 1; }
};

// 8 consecutive activations x[k0 .. k0+8) of one row as f32; zero past `in` or for a missing row.
// Needs in % 4 == 0 and a 16-byte aligned row base: each half (4 values) is fully in or out.
__device__ __forceinline__ void load_x8(const float* __restrict__ row, int k0, int in, float (&v)[8]) {
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int k = k0 + 4 * h;
    if (row && k < in) {
      const float4 f = __ldg(reinterpret_cast<const float4*>(row + k));
      v[4 * h] = f.x;
      v[4 * h + 1] = f.y;
      v[4 * h + 2] = f.z;
      v[4 * h + 3] = f.w;
    } else {
      v[4 * h] = v[4 * h + 1] = v[4 * h + 2] = v[4 * h + 3] = 0.0f;
    }
  }
}
__device__ __forceinline__ void load_x8(const __half* __restrict__ row, int k0, int in, float (&v)[8]) {
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int k = k0 + 4 * h;
    if (row && k < in) {
      const uint2 u = __ldg(reinterpret_cast<const uint2*>(row + k));
      const float2 a = __half22float2(bits_h2(u.x)), b = __half22float2(bits_h2(u.y));
      v[4 * h] = a.x;
      v[4 * h + 1] = a.y;
      v[4 * h + 2] = b.x;
      v[4 * h + 3] = b.y;
    } else {
      v[4 * h] = v[4 * h + 1] = v[4 * h + 2] = v[4 * h + 3] = 0.0f;
    }
  }
}

// Four consecutive columns n..n+3 of a row of `out` values (vector load when out % 4 == 0).
__device__ __forceinline__ uint4 load_u32x4(const uint32_t* __restrict__ row, int n, int out) {
  if ((out & 3) == 0 && n + 3 < out) return __ldg(reinterpret_cast<const uint4*>(row + n));
  uint4 r;
  r.x = n < out ? __ldg(row + n) : 0u;
  r.y = n + 1 < out ? __ldg(row + n + 1) : 0u;
  r.z = n + 2 < out ? __ldg(row + n + 2) : 0u;
  r.w = n + 3 < out ? __ldg(row + n + 3) : 0u;
  return r;
}
__device__ __forceinline__ float4 load_f32x4(const float* __restrict__ row, int n, int out) {
  if ((out & 3) == 0 && n + 3 < out) return __ldg(reinterpret_cast<const float4*>(row + n));
  float4 r;
  r.x = n < out ? __ldg(row + n) : 0.0f;
  r.y = n + 1 < out ? __ldg(row + n + 1) : 0.0f;
  r.z = n + 2 < out ? __ldg(row + n + 2) : 0.0f;
  r.w = n + 3 < out ? __ldg(row + n + 3) : 0.0f;
  return r;
}
// Four uint8 zeros of columns n..n+3, as one little-endian word (byte i = column n+i).
__device__ __forceinline__ uint32_t load_u8x4(const uint8_t* __restrict__ row, int n, int out) {
  if ((out & 3) == 0 && n + 3 < out) return __ldg(reinterpret_cast<const uint32_t*>(row + n));
  uint32_t r = 0;
#pragma unroll
  for (int i = 0; i < 4; i++)
    if (n + i < out) r |= (uint32_t)__ldg(row + n + i) << (8 * i);
  return r;
}

__device__ __forceinline__ uint32_t u4_get(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
__device__ __forceinline__ float f4_get(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

}  // namespace lowbit
