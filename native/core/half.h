// Scalar fp16/bf16 <-> fp32 conversions (bit-exact, IEEE round-to-nearest-even).
// fp16: IEEE binary16. f32 -> fp16 overflows to ±inf at |x| >= 65520 (65504 < |x| < 65520 rounds
// down to 65504); `saturate` stores ±65504 instead. bf16 = upper 16 bits of binary32, rounded
// u + 0x7fff + ((u >> 16) & 1); NaN stays NaN and is forced quiet (| 0x40).
#pragma once
#include <cstdint>
#include <cstring>

namespace lowbit {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) {
    if (man == 0) return bits_f32(sign);
    // subnormal: value = man * 2^-24
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// Returns the fp16 bits; sets *overflow when a finite input became ±inf (not with saturate).
inline uint16_t f32_to_f16(float f, bool saturate, bool* overflow) {
  uint32_t u = f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));  // NaN, quiet
  if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00);                       // inf
  if (a >= 0x477ff000u) {                                                       // |x| >= 65520 rounds to inf
    if (saturate) return (uint16_t)(sign | 0x7bff);
    if (overflow) *overflow = true;
    return (uint16_t)(sign | 0x7c00);
  }
  if (a < 0x38800000u) {  // below the smallest normal fp16 (2^-14): subnormal or zero
    // value in units of 2^-24, rounded half to even
    float v = bits_f32(a) * 16777216.0f;  // exact (power of two scaling)
    uint32_t q = (uint32_t)v;
    float r = v - (float)q;
    if (r > 0.5f || (r == 0.5f && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t exp = (a >> 23) - 112, man = a & 0x7fffff;
  uint32_t h = (exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;  // carry into the exponent is correct
  return (uint16_t)(sign | h);
}

inline float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

// Round a float to the nearest fp16-representable value (saturating), returned as float.
inline float round_to_f16(float f) { return f16_to_f32(f32_to_f16(f, true, nullptr)); }

}  // namespace lowbit
