// The blocked GEMM driver shared by the SIMD variants (AVX2: 6×16 tile, NEON: 8×8 tile):
// y[:, n0:n1] (+)= x · w[n0:n1]ᵀ with panels of w packed NR rows wide (k-major, zero-padded),
// tiles of x packed MR rows high, k blocked by KC, NC weight rows per packed block (L2), MC rows
// of x per A block. The ISA supplies the micro-kernel and the B-panel packer:
//   kernel(kc, A_tile, B_panel, C, ldc, mr, nr, overwrite)
//   pack_b(w, k, row0, row_end, k0, kc, dst)
// Ap must hold MC·KC floats and Bp NC·KC (aligned as the kernel's loads need). When `apre` is
// given, x was packed for the whole call beforehand (pack_rows_kmajor over every tile and k block, see
// below; done once by the driver instead of once per column chunk); blocks are copied into Ap.
// Everything here has internal linkage (anonymous namespace): each ISA source compiles its own
// copy with its own flags, so the linker can never hand one variant's code to another's caller.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>

namespace lowbit {
namespace {

// R rows of a row-major matrix (rows row0 …; rows ≥ row_end are zero) over k0 … k0+kc, stored
// k-major (dst[kk·R + i]), element by element: the A tiles of x (R = MR), NEON's B panels and the
// AVX2 packer's edge panels of w (R = NR).
template <size_t R>
inline void pack_rows_kmajor(const float* src_rows, size_t k, size_t row0, size_t row_end, size_t k0, size_t kc, float* dst) {
  for (size_t i = 0; i < R; i++) {
    const size_t row = row0 + i;
    if (row < row_end) {
      const float* src = src_rows + row * k + k0;
      for (size_t kk = 0; kk < kc; kk++) dst[kk * R + i] = src[kk];
    } else {
      for (size_t kk = 0; kk < kc; kk++) dst[kk * R + i] = 0.0f;
    }
  }
}

// The valid mr × nr corner of a micro-kernel's MR × NR result (stored to `tile`) into C.
template <size_t MR, size_t NR>
inline void store_edge_tile(const float (&tile)[MR][NR], float* C, size_t ldc, size_t mr, size_t nr, bool overwrite) {
  for (size_t i = 0; i < mr; i++)
    for (size_t j = 0; j < nr; j++) C[i * ldc + j] = overwrite ? tile[i][j] : C[i * ldc + j] + tile[i][j];
}

// The whole of x packed ahead: k block kc0 (kc channels) holds mpad = ⌈m / MR⌉·MR rows, and the
// tile starting at row `row` (a multiple of MR) sits at apre + packed_a_offset(mpad, kc0, kc, row).
// pack_a_all packs tiles [t0, t1) (the driver splits them across threads).
template <size_t MR>
inline size_t padded_rows(size_t m) {
  return (m + MR - 1) / MR * MR;
}
inline size_t packed_a_offset(size_t mpad, size_t kc0, size_t kc, size_t row) { return kc0 * mpad + row * kc; }
template <size_t MR>
inline size_t packed_a_floats(size_t m, size_t k) {
  return padded_rows<MR>(m) * k;
}
template <size_t MR, size_t KC>
inline void pack_a_all(const float* x, size_t m, size_t k, float* apre, size_t t0, size_t t1) {
  const size_t mpad = padded_rows<MR>(m);
  for (size_t kc0 = 0; kc0 < k; kc0 += KC) {
    const size_t kc = std::min(KC, k - kc0);
    for (size_t t = t0; t < t1; t++) pack_rows_kmajor<MR>(x, k, t * MR, m, kc0, kc, apre + packed_a_offset(mpad, kc0, kc, t * MR));
  }
}

template <size_t MR, size_t NR, size_t KC, size_t MC, size_t NC, class Kernel, class PackB>
inline void gemm_blocked(const float* x, size_t m, size_t k, const float* w, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1, float* Ap,
                         float* Bp, Kernel kernel, PackB pack_b, const float* apre = nullptr) {
  static_assert(MC % MR == 0, "MC is whole tiles");
  const size_t mpad = padded_rows<MR>(m);
  for (size_t nc0 = n0; nc0 < n1; nc0 += NC) {
    const size_t nc = std::min(NC, n1 - nc0);
    const size_t panels = (nc + NR - 1) / NR;
    for (size_t kc0 = 0; kc0 < k; kc0 += KC) {
      const size_t kc = std::min(KC, k - kc0);
      // pack B: panel p holds weight rows nc0 + NR·p … +NR−1, k-major: Bp[p][kk][j]
      for (size_t p = 0; p < panels; p++) pack_b(w, k, nc0 + p * NR, nc0 + nc, kc0, kc, Bp + p * kc * NR);
      const bool overwrite = kc0 == 0 && !accumulate;
      for (size_t mc0 = 0; mc0 < m; mc0 += MC) {
        const size_t mc = std::min(MC, m - mc0);
        const size_t tiles = (mc + MR - 1) / MR;
        // pack A: tile t holds activation rows mc0 + MR·t … +MR−1, k-major: A[t][kk][i]
        // From apre: used in place when few panels share the block (a narrow column chunk), else
        // copied contiguously into the L2-resident Ap first, so that the kernels' broadcasts hit L2
        // rather than L3/DRAM when x is large (2048³: 113 → 140 GFLOP/s); either is far cheaper
        // than the strided pack.
        const float* A = Ap;
        if (apre && panels < 8) A = apre + packed_a_offset(mpad, kc0, kc, mc0);
        else if (apre) std::memcpy(Ap, apre + packed_a_offset(mpad, kc0, kc, mc0), tiles * kc * MR * sizeof(float));
        else
          for (size_t t = 0; t < tiles; t++) pack_rows_kmajor<MR>(x, k, mc0 + t * MR, mc0 + mc, kc0, kc, Ap + t * kc * MR);
        for (size_t p = 0; p < panels; p++) {
          const size_t nr = std::min(NR, nc - p * NR);
          for (size_t t = 0; t < tiles; t++) {
            const size_t mr = std::min(MR, mc - t * MR);
            kernel(kc, A + t * kc * MR, Bp + p * kc * NR, y + (mc0 + t * MR) * ldy + nc0 + p * NR, ldy, mr, nr, overwrite);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace lowbit
