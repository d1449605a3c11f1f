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

// erf and tanh: odd piecewise polynomials on 16 intervals of |x| (one AVX-512
// vpermps fetches a coefficient for all lanes; no exp, no division). Interval
// i covers [i w, (i+1) w) and holds a polynomial in d = |x| - i w (exact), whose
// constant term carries most of the value, so rounding adds < 1 ulp. From
// |x| >= one_at (where the function rounds to 1 in float) the result is exactly
// +-1, and it never exceeds 1: GELU's 1 + erf(x) must reach exactly 0.
// Coefficients: tools/fit_vmath.py (least squares on Chebyshev nodes, rounded
// to float). Max abs error over all floats, this scalar evaluation (no FMA):
// erf 5.8e-8, tanh 9.4e-8 (vmath_avx512.h evaluates the same tables with FMA;
// tests/kernels/test_eltwise.py checks both on a dense grid).
//   erf: 16 x degree 5 on width 0.25: max abs error (float32, no FMA) 5.758e-08 at x=2.500013
constexpr float kErfTab[6][16] = {
    {0.f, 0.276326388f, 0.520499885f, 0.711155653f, 0.842700779f, 0.92290014f, 0.966105163f, 0.986671686f, 0.995322287f, 0.998537302f, 0.999593019f, 0.999899387f, 0.999977887f, 0.999995708f, 0.999999285f, 0.999999881f},
    {1.12837863f, 1.06001306f, 0.878780961f, 0.642929196f, 0.415108949f, 0.236520708f, 0.118929334f, 0.0527739152f, 0.0206651799f, 0.00714075379f, 0.00218050671f, 0.000585505099f, 0.000141067198f, 2.8285498e-05f, 3.17094191e-06f, 1.31974639e-06f},
    {2.69909142e-05f, -0.264939278f, -0.439318895f, -0.482145935f, -0.415151238f, -0.295660585f, -0.178386688f, -0.0923360884f, -0.0412923172f, -0.0160325747f, -0.00549354265f, -0.00159394648f, -0.000457982242f, -7.44885765e-05f, 3.10577125e-05f, -1.31148563e-05f},
    {-0.376590222f, -0.31036973f, -0.14768298f, 0.0261256043f, 0.138934642f, 0.167901158f, 0.138871491f, 0.0900399685f, 0.0478254184f, 0.0213410705f, 0.00875705481f, 0.00257687503f, 0.00115027337f, 7.324134e-06f, -0.000415050657f, 9.75138828e-05f},
    {0.00330944033f, 0.136565045f, 0.192539081f, 0.155023396f, 0.065727666f, -0.00986961368f, -0.0467369407f, -0.0482282303f, -0.0327475257f, -0.0172363017f, -0.0100001553f, -0.00238926895f, -0.00243301992f, 0.000486290402f, 0.00176697411f, -0.000370762049f},
    {0.103766374f, 0.0460823849f, -0.0272510424f, -0.0684217215f, -0.0599405356f, -0.0320416801f, -0.00405567605f, 0.00985188968f, 0.0103597967f, 0.00662238803f, 0.00697889784f, 0.000856308965f, 0.00276554725f, -0.000903595821f, -0.00261316216f, 0.000531116384f},
};
//   tanh: 16 x degree 6 on width 0.5625: max abs error (float32, no FMA) 9.401e-08 at x=1.025734
constexpr float kTanhTab[7][16] = {
    {0.f, 0.509829998f, 0.809301078f, 0.933828056f, 0.978026092f, 0.992812812f, 0.997660995f, 0.999240041f, 0.999753237f, 0.999919891f, 0.999974012f, 0.999991536f, 0.999997258f, 0.999999106f, 0.999999702f, 0.999999881f},
    {1.0000037f, 0.740067899f, 0.345032632f, 0.127964795f, 0.0434660278f, 0.0143218618f, 0.00467181159f, 0.00151886919f, 0.000492225983f, 0.000159315081f, 5.07020559e-05f, 1.77968177e-05f, 5.47879472e-06f, 1.97444751e-06f, 1.02734555e-06f, 1.45130548e-06f},
    {-0.000139025229f, -0.377142757f, -0.279271513f, -0.119497165f, -0.0425252132f, -0.0142066805f, -0.0046506729f, -0.00151115551f, -0.000475008448f, -0.000146955659f, -3.31687297e-05f, -2.97694132e-05f, -5.41208192e-06f, -4.54091105e-06f, -6.9687735e-06f, -1.8159677e-05f},
    {-0.331514508f, -0.0562483184f, 0.111428425f, 0.0689840168f, 0.0271780323f, 0.00925920438f, 0.00302466354f, 0.000967034022f, 0.00021649772f, 2.57985976e-05f, -8.02808572e-05f, 8.97500431e-05f, 3.21647258e-06f, 1.80125244e-05f, 3.93384325e-05f, 0.000109668828f},
    {-0.0113513507f, 0.163998887f, 0.00079282932f, -0.0249646045f, -0.0125775589f, -0.00426607858f, -0.00132024568f, -0.00037162748f, 0.000169445833f, 0.000186969293f, 0.000323400775f, -0.000238156426f, -5.14648548e-07f, -5.04434756e-05f, -0.000115608069f, -0.000324636174f},
    {0.171073347f, -0.0741386488f, -0.0253078509f, 0.00430174405f, 0.00432628393f, 0.00126164302f, 0.000273545011f, 3.06268316e-06f, -0.000412081921f, -0.000321509724f, -0.000478003261f, 0.000332849013f, -1.17134118e-06f, 7.1123919e-05f, 0.00016421976f, 0.000461639662f},
    {-0.0670198351f, 0.00886360276f, 0.0102069732f, 0.000216943663f, -0.00092353113f, -0.000148185311f, 3.4402703e-05f, 5.89367482e-05f, 0.000245181756f, 0.00018229644f, 0.000263559719f, -0.000181393334f, 8.60836735e-07f, -3.88339322e-05f, -8.980641e-05f, -0.000252513302f},
};

// copysign(min(poly_i(d), 1), x), or +-1 from one_at on; NaN propagates (d is NaN).
template <int NC>
inline float odd_piecewise(float x, const float (&c)[NC][16], float w, float inv_w, float one_at) {
  const std::uint32_t u = f32_to_bits(x);
  const float hi = 16.f * w * (1.f - 1.1920929e-7f);  // just below 16 w: i <= 15
  const float ax = bits_to_f32(u & 0x7fffffffu);
  const float a = ax > hi ? hi : ax;
  const float fi = a * inv_w;
  const int i = fi < 15.f ? static_cast<int>(fi) : 15;  // also 15 for NaN
  const float d = a - static_cast<float>(i) * w;
  float p = c[NC - 1][i];
  for (int k = NC - 2; k >= 0; --k) p = p * d + c[k][i];
  p = ax >= one_at || p > 1.f ? 1.f : p;
  return bits_to_f32(f32_to_bits(p) | (u & 0x80000000u));
}

// one_at: erfc(3.92) = 2.9e-8 and 1 - tanh(9) = 3.0e-8, about half an ulp below 1.
constexpr float kErfW = 0.25f, kErfInvW = 4.f, kErfOne = 3.92f;
constexpr float kTanhW = 0.5625f, kTanhInvW = 1.f / 0.5625f, kTanhOne = 9.f;

inline float erf_f(float x) { return odd_piecewise(x, kErfTab, kErfW, kErfInvW, kErfOne); }
inline float tanh_f(float x) { return odd_piecewise(x, kTanhTab, kTanhW, kTanhInvW, kTanhOne); }

inline float gelu_erf_f(float x) { return 0.5f * x * (1.f + erf_f(x * 0.70710678118654752f)); }
inline float gelu_tanh_f(float x) {
  return 0.5f * x * (1.f + tanh_f(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

}  // namespace
}  // namespace graphopt::kernels
