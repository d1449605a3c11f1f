// Branch-free scalar math that the compiler auto-vectorises under each ISA
// translation unit's flags. Internal linkage (anonymous namespace) on purpose:
// each ISA TU gets its own copy, so no AVX-512 code can leak into the scalar
// path through the linker's choice of one inline definition (ODR).
#pragma once
#include <cstdint>
#include <cstring>

namespace graphopt::kernels {
namespace {

inline float bits_to_f32(std::uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline std::uint32_t f32_to_bits(float f) { std::uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_f32(std::uint16_t h) { return bits_to_f32(static_cast<std::uint32_t>(h) << 16); }

// Round to nearest even; NaN stays a (quiet) NaN.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t u = f32_to_bits(f);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  const std::uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<std::uint16_t>(nan ? ((u >> 16) | 0x40u) : r);
}

inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Round half to even, exact for |x| <= 2^22 (callers clamp first). Needs
// IEEE semantics (no -ffast-math), which the build guarantees.
inline float round_even(float x) {
  const float magic = 12582912.f;  // 1.5 * 2^23
  return (x + magic) - magic;
}

// exp(x), ~1-2 ulp on [-87, 88]; 0 below -87.33, finite (not inf) above 88.37.
inline float exp_f(float x) {
  const float xc = clampf(x, -87.33654f, 88.37626f);
  const float n = round_even(xc * 1.44269504088896341f);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float y = 1.9875691500E-4f;
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * r * r + r + 1.f;
  const std::int32_t e = (static_cast<std::int32_t>(n) + 127) << 23;
  const float s = bits_to_f32(static_cast<std::uint32_t>(e));
  return x < -87.33654f ? 0.f : y * s;
}

// erf(x), Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7).
inline float erf_f(float x) {
  const float ax = x < 0.f ? -x : x;
  const float t = 1.f / (1.f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.f - p * t * exp_f(-ax * ax);
  return x < 0.f ? -y : y;
}

inline float tanh_f(float x) { return 1.f - 2.f / (exp_f(2.f * x) + 1.f); }

inline float gelu_erf_f(float x) { return 0.5f * x * (1.f + erf_f(x * 0.70710678118654752f)); }
inline float gelu_tanh_f(float x) {
  return 0.5f * x * (1.f + tanh_f(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

}  // namespace
}  // namespace graphopt::kernels
