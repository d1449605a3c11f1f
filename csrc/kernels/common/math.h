// Branch-free scalar math that the compiler auto-vectorises under each ISA
// translation unit's flags. Internal linkage (anonymous namespace) on purpose:
// each ISA TU gets its own copy, so no AVX-512 code can leak into the scalar
// path through the linker's choice of one inline definition (ODR).
#pragma once
#include <cmath>
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

// erf and tanh: odd piecewise polynomials on 16 intervals of |x| centred on
// i w (one AVX-512 vpermps fetches a coefficient for all lanes; no exp, no
// division). Interval i = round(|x| / w), read from the low mantissa bits of
// |x| / w + 1.5 * 2^23, holds a polynomial in d = |x| - i w whose constant term
// carries most of the value, so rounding adds < 1 ulp. Interval 15 is the
// constant 1 and starts where the function rounds to 1 in float; |x| is clamped
// inside it, so large |x| gives exactly +-1 (GELU's 1 + erf(x) reaches 0).
// Coefficients: tools/fit_vmath.py (least squares on Chebyshev nodes, rounded
// to float). Max abs error over all floats, this scalar evaluation (no FMA)
// and the FMA ones of vmath_avx2.h / vmath_avx512.h alike: erf 6.4e-8, tanh
// 5.6e-8 (tools/check_vmath.py, exhaustive; tests/kernels/test_eltwise.py, grid).
//   erf: w = 0.270344824f, degree 5: max abs error (float32, no FMA) 6.354e-08 at x=0.5432687
constexpr float kErfTab[6][16] = {
    {0.f, 0.297779918f, 0.555520356f, 0.74860841f, 0.873810232f, 0.944075882f, 0.978206754f, 0.992555499f, 0.99777627f, 0.999420285f, 0.999868274f, 0.999973953f, 0.99999553f, 0.999999344f, 0.99999994f, 1.f},
    {1.12837911f, 1.04885161f, 0.842347145f, 0.58450228f, 0.350428373f, 0.181522444f, 0.0812418088f, 0.0314156972f, 0.0104961935f, 0.00302994903f, 0.000755712274f, 0.000162853263f, 3.03217967e-05f, 4.87788338e-06f, 6.77996752e-07f, 0.f},
    {1.27939575e-06f, -0.283544689f, -0.455434024f, -0.474046379f, -0.378949523f, -0.245368138f, -0.131786436f, -0.0594529361f, -0.0226981398f, -0.00737362355f, -0.00203752704f, -0.000482923031f, -9.98261239e-05f, -1.99974729e-05f, -8.50008655e-06f, 0.f},
    {-0.37616697f, -0.298508525f, -0.116614036f, 0.0614750981f, 0.156376705f, 0.160606161f, 0.115425147f, 0.0645340383f, 0.0292325076f, 0.0109480964f, 0.00343004707f, 0.000905714056f, 0.00020258734f, 3.8524151e-05f, 6.24477843e-06f, 0.f},
    {0.000534393592f, 0.133748397f, 0.181794256f, 0.132501766f, 0.0421507657f, -0.0263374541f, -0.049117025f, -0.0411133133f, -0.024200663f, -0.0108560538f, -0.00423252629f, -0.00126098364f, -0.0002372694f, 6.15715689e-05f, 0.000248540571f, 0.f},
    {0.110138424f, 0.0745059103f, -0.00439803302f, -0.0610131733f, -0.064605698f, -0.0337319076f, -0.00258578011f, 0.0117096733f, 0.0119838137f, 0.00729783252f, 0.00327001791f, 0.00115177687f, 0.000328768539f, 7.73596403e-05f, 1.5166338e-05f, 0.f},
};
//   tanh: w = 0.621379316f, degree 7: max abs error (float32, no FMA) 5.578e-08 at x=6.215657
constexpr float kTanhTab[8][16] = {
    {0.f, 0.552087665f, 0.84624052f, 0.953059673f, 0.986223638f, 0.99600476f, 0.998845398f, 0.999666631f, 0.999903798f, 0.999972224f, 0.999992013f, 0.999997675f, 0.999999344f, 0.999999821f, 0.99999994f, 1.f},
    {1.f, 0.695199251f, 0.283876956f, 0.0916772187f, 0.0273629818f, 0.00797456503f, 0.00230791187f, 0.000666580745f, 0.000192412146f, 5.553144e-05f, 1.60259679e-05f, 4.62491198e-06f, 1.3346928e-06f, 3.85174786e-07f, 1.11156545e-07f, 0.f},
    {-1.44981198e-06f, -0.38381204f, -0.24022691f, -0.0873720795f, -0.0269879363f, -0.00794468168f, -0.00230698031f, -0.000664464431f, -0.000193123327f, -5.47294185e-05f, -1.81801024e-05f, -3.62021569e-06f, -2.30398814e-06f, -1.5266852e-06f, 2.22538688e-07f, 0.f},
    {-0.333294183f, -0.0198393464f, 0.108665928f, 0.0527133495f, 0.0174932405f, 0.00525278319f, 0.00153328187f, 0.00044394299f, 0.000128237793f, 3.70178932e-05f, 1.0683726e-05f, 3.08325457e-06f, 8.89793796e-07f, 2.56783153e-07f, 7.41043991e-08f, 0.f},
    {-0.000496983761f, 0.138936207f, -0.0118992273f, -0.0211560577f, -0.00821750052f, -0.00254316372f, -0.000727137376f, -0.000260905741f, -4.89709746e-05f, -3.50910632e-05f, 3.92936345e-05f, -2.23579518e-05f, 1.96383335e-05f, 2.35229891e-05f, -6.95100198e-06f, 0.f},
    {0.136642545f, -0.0544852838f, -0.0198872779f, 0.00459255697f, 0.00292068487f, 0.00100018573f, 0.000302389206f, 8.84265901e-05f, 2.56158419e-05f, 7.4004929e-06f, 2.13636031e-06f, 6.16582099e-07f, 1.77942511e-07f, 5.13519183e-08f, 1.48193919e-08f, 0.f},
    {-0.0115423528f, -0.0254322272f, 0.0154027203f, 0.00105075329f, -0.000955219788f, -0.000555990613f, -0.000312565069f, 0.00020266413f, -9.81280973e-05f, 9.56874937e-05f, -0.000264951435f, 0.000123021571f, -0.000118948912f, -0.000140029137f, 4.09243403e-05f, 0.f},
    {-0.0362175889f, 0.0280783009f, -0.00423622504f, -0.00128436822f, 6.74203402e-05f, 7.65465666e-05f, 2.74439662e-05f, 8.38104552e-06f, 2.45743126e-06f, 7.12419535e-07f, 2.05864424e-07f, 5.94310485e-08f, 1.71524146e-08f, 4.95189134e-09f, 1.42990442e-09f, 0.f},
};

// copysign(poly_i(d), x); NaN propagates (d is NaN, the index is clamped).
template <int NC>
inline float odd_piecewise(float x, const float (&c)[NC][16], float w, float inv_w) {
  const std::uint32_t u = f32_to_bits(x);
  const float hi = 15.5f * w * (1.f - 9.5367432e-7f);  // round(|x| / w) <= 15
  const float ax = bits_to_f32(u & 0x7fffffffu);
  const float a = ax > hi ? hi : ax;
  const float magic = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  const float fi = (a * inv_w + magic) - magic;
  const int i = fi >= 0.f && fi <= 15.f ? static_cast<int>(fi) : 0;
  const float d = a - fi * w;
  float p = c[NC - 1][i];
  for (int k = NC - 2; k >= 0; --k) p = p * d + c[k][i];
  return bits_to_f32(f32_to_bits(p) | (u & 0x80000000u));
}

constexpr float kErfW = 0.270344824f, kErfInvW = 1.f / kErfW;
constexpr float kTanhW = 0.621379316f, kTanhInvW = 1.f / kTanhW;

inline float erf_f(float x) { return odd_piecewise(x, kErfTab, kErfW, kErfInvW); }
inline float tanh_f(float x) { return odd_piecewise(x, kTanhTab, kTanhW, kTanhInvW); }

inline float gelu_erf_f(float x) { return 0.5f * x * (1.f + erf_f(x * 0.70710678118654752f)); }
// GELU, tanh approximation, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3),
// evaluated as the identical x * sigmoid(2u) = x / (1 + exp(-2u)): no cancellation in
// 1 + tanh(u) for x << 0, so the relative error stays ~3e-7 everywhere.
inline float gelu_tanh_f(float x) {
  const float v = x * (-1.59576912161f + -0.0713548162726f * (x * x));  // -2u
  const float e = v > 88.f ? INFINITY : exp_f(v);  // exp_f saturates below inf: x / inf is the -0 we want
  return x / (1.f + e);
}

}  // namespace
}  // namespace graphopt::kernels
