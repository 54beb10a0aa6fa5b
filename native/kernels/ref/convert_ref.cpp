// Reference conversions: scalar loops over core/half.h. No threads, no intrinsics.
#include <cstring>

#include "core/half.h"
#include "kernels/convert.h"

namespace lowbit {

static inline float load_as_f32(const uint8_t* p, int dt) {
  if (dt == DTYPE_F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return dt == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

void convert_ref(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, ConvertResult* r) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  const size_t ss = dtype_size(sdt);
  if (sdt == ddt) {  // the identity, bit for bit (NaN payloads included)
    if (n) std::memcpy(d, s, n * ss);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float f = load_as_f32(s + i * ss, sdt);
    if (ddt == DTYPE_F32) {
      std::memcpy(d + i * 4, &f, 4);
    } else if (ddt == DTYPE_F16) {
      bool of = false;
      uint16_t h = f32_to_f16(f, saturate, &of);
      if (of) {
        if (r->overflow++ == 0) r->first_overflow = i;
      }
      std::memcpy(d + i * 2, &h, 2);
    } else {
      uint16_t h = f32_to_bf16(f);
      std::memcpy(d + i * 2, &h, 2);
    }
  }
}

size_t first_nonfinite_ref(const void* src, int dt, size_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  for (size_t i = 0; i < n; i++) {
    if (dt == DTYPE_F32) {
      uint32_t u;
      std::memcpy(&u, s + 4 * i, 4);
      if ((u & 0x7f800000u) == 0x7f800000u) return i;
    } else {
      uint16_t h;
      std::memcpy(&h, s + 2 * i, 2);
      const uint16_t e = dt == DTYPE_F16 ? 0x7c00 : 0x7f80;
      if ((h & e) == e) return i;
    }
  }
  return SIZE_MAX;
}

}  // namespace lowbit
