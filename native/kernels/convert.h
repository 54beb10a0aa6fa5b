// Element type conversion: dst[i] = convert(src[i]) between f32, f16 and bf16.
// Every variant is bit-exact with convert_ref (IEEE round-to-nearest-even, see core/half.h).
// src/dst: contiguous arrays of n elements of their dtype; byte alignment of 2 (f16/bf16) or
// 4 (f32) is not required (unaligned loads are used).
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

struct TaskContext;

enum Dtype { DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2 };

struct ConvertResult {
  size_t overflow = 0;               // finite inputs that became ±inf (f32 -> f16 without saturate)
  size_t first_overflow = SIZE_MAX;  // index of the first one
};

inline size_t dtype_size(int dt) { return dt == DTYPE_F32 ? 4 : 2; }

// Plain reference: scalar, single-threaded.
void convert_ref(const void* src, int src_dtype, void* dst, int dst_dtype, size_t n, bool saturate, ConvertResult* r);

// Range kernels of each ISA (single-threaded; the driver splits work). `base` is the global index
// of element 0, used to report first_overflow.
void convert_range_generic(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r);
void convert_range_avx2(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r);
void convert_range_avx512(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r);
void convert_range_neon(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r);

// Driver: picks the ISA variant, splits across the thread pool. mode: MODE_FAST or MODE_REF.
void convert(const void* src, int src_dtype, void* dst, int dst_dtype, size_t n, bool saturate, int mode, ConvertResult* r, TaskContext* ctx);
// Single-threaded fast conversion for use inside already-parallel kernels.
void convert_range(const void* src, int sdt, void* dst, int ddt, size_t n);

// Non-finite scan: the index of the first NaN or ±Inf (exponent bits all ones) among n elements
// of dtype at src (any byte alignment), or SIZE_MAX when every element is finite. Reads the bit
// patterns only (no conversion, no floating-point compare), so a signaling NaN is found like any
// other. The vector variants OR 64-element blocks of compare masks and locate the element in the
// first block that has one, so the cost is one streaming read of the tensor.
size_t first_nonfinite_ref(const void* src, int dt, size_t n);
size_t first_nonfinite_range_generic(const void* src, int dt, size_t n);
size_t first_nonfinite_range_avx2(const void* src, int dt, size_t n);
size_t first_nonfinite_range_avx512(const void* src, int dt, size_t n);
size_t first_nonfinite_range_neon(const void* src, int dt, size_t n);
// Driver: ISA dispatch, split over the thread pool (the smallest index found wins). mode: MODE_FAST or MODE_REF.
size_t first_nonfinite(const void* src, int dt, size_t n, int mode);

}  // namespace lowbit
