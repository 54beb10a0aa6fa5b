// GPTQ int4 dequantization on the device:  W[n, k] = s[g_idx[k], n] · (code(k, n) − z[g_idx[k], n]).
// Layout: qweight (cols/8, rows) int32 — 8 codes of consecutive input channels per word, low
// nibble first — so a warp reading 32 consecutive output channels n of one word row is coalesced.
// Each block decodes a tile of 32 output channels × 64 input channels into shared memory, then
// writes it out row by row (coalesced 64-float rows of W): a transpose through shared memory,
// because the packed layout runs along k while W (rows = out) runs along k too but per output row.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_check.cuh"

namespace lowbit {

namespace {

constexpr int TILE_N = 32;  // output channels per block (one warp's worth of coalesced loads)
constexpr int TILE_W = 8;   // packed words per block along k (= 64 input channels)

__global__ void dequant_gptq_int4_kernel(const int32_t* __restrict__ qweight, const float* __restrict__ scales, const uint8_t* __restrict__ zeros,
                                         const int32_t* __restrict__ g_idx, int rows, int cols, float* __restrict__ out) {
  __shared__ float tile[TILE_N][TILE_W * 8 + 1];  // +1: no bank conflicts on the transposed read
  const int n0 = blockIdx.x * TILE_N, w0 = blockIdx.y * TILE_W;
  const int tx = threadIdx.x, ty = threadIdx.y;  // tx: output channel in tile, ty: word in tile
  const int n = n0 + tx, w = w0 + ty;
  if (n < rows && w * 8 < cols) {
    const uint32_t word = (uint32_t)qweight[(size_t)w * rows + n];
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const int k = w * 8 + j;
      const int g = g_idx[k];
      const float s = scales[(size_t)g * rows + n];
      const float z = (float)zeros[(size_t)g * rows + n];
      tile[tx][ty * 8 + j] = s * ((float)((word >> (4 * j)) & 15u) - z);
    }
  }
  __syncthreads();
  // write: each of the 8 warps-rows handles 4 output rows; 32 lanes × 2 = 64 consecutive k
  const int lin = ty * TILE_N + tx;  // 0..255
  for (int r = lin / 64; r < TILE_N; r += (TILE_N * TILE_W) / 64) {
    const int kk = lin % 64;
    const int nn = n0 + r, k = w0 * 8 + kk;
    if (nn < rows && k < cols) out[(size_t)nn * cols + k] = tile[r][kk];
  }
}

}  // namespace

float dequant_gptq_int4_cuda(const int32_t* qweight, const float* scales, const uint8_t* zeros, const int32_t* g_idx, int rows, int cols, int groups,
                             float* out) {
  int32_t *d_q = nullptr, *d_g = nullptr;
  float *d_s = nullptr, *d_out = nullptr;
  uint8_t* d_z = nullptr;
  const size_t nq = (size_t)(cols / 8) * rows, ns = (size_t)groups * rows, nw = (size_t)rows * cols;
  cudaEvent_t a = nullptr, b = nullptr;
  float ms = 0.0f;
  try {
    CUDA_CHECK(cudaMalloc(&d_q, nq * 4));
    CUDA_CHECK(cudaMalloc(&d_s, ns * 4));
    CUDA_CHECK(cudaMalloc(&d_z, ns));
    CUDA_CHECK(cudaMalloc(&d_g, (size_t)cols * 4));
    CUDA_CHECK(cudaMalloc(&d_out, nw * 4));
    CUDA_CHECK(cudaMemcpy(d_q, qweight, nq * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(d_s, scales, ns * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(d_z, zeros, ns, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(d_g, g_idx, (size_t)cols * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    dim3 block(TILE_N, TILE_W);
    dim3 grid((rows + TILE_N - 1) / TILE_N, (cols / 8 + TILE_W - 1) / TILE_W);
    CUDA_CHECK(cudaEventRecord(a));
    dequant_gptq_int4_kernel<<<grid, block>>>(d_q, d_s, d_z, d_g, rows, cols, d_out);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaEventRecord(b));
    CUDA_CHECK(cudaEventSynchronize(b));
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    CUDA_CHECK(cudaMemcpy(out, d_out, nw * 4, cudaMemcpyDeviceToHost));
  } catch (...) {
    cudaFree(d_q);
    cudaFree(d_s);
    cudaFree(d_z);
    cudaFree(d_g);
    cudaFree(d_out);
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    throw;
  }
  cudaFree(d_q);
  cudaFree(d_s);
  cudaFree(d_z);
  cudaFree(d_g);
  cudaFree(d_out);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms;
}

}  // namespace lowbit
