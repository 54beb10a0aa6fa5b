// Host emulation shim of cuda_fp16.h: __half as its bit pattern, conversions by core/half.h
// (round to nearest even), half2 arithmetic as float arithmetic rounded once to f16 — exact for
// sub and mul, since the float result of two f16 operands is exact.
#pragma once
#include "emu.h"
#include "core/half.h"
struct __half { uint16_t b; };
struct __half2 { __half x, y; };
inline __half __float2half_rn(float f) { return {lowbit::f32_to_f16(f, false, nullptr)}; }
inline float __half2float(__half h) { return lowbit::f16_to_f32(h.b); }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }
inline __half2 __float2half2_rn(float a) { return {__float2half_rn(a), __float2half_rn(a)}; }
inline float2 __half22float2(__half2 h) { return {__half2float(h.x), __half2float(h.y)}; }
inline __half2 __hsub2(__half2 a, __half2 b) { return {__float2half_rn(__half2float(a.x) - __half2float(b.x)), __float2half_rn(__half2float(a.y) - __half2float(b.y))}; }
inline __half2 __hmul2(__half2 a, __half2 b) { return {__float2half_rn(__half2float(a.x) * __half2float(b.x)), __float2half_rn(__half2float(a.y) * __half2float(b.y))}; }
