/* Helpers shared by the compiled kernels (ltc_kernel.c, cfc_kernel.c): instruction-set dispatch, forced
 * inlining, the floating-point mode of a kernel call, aligned work buffers and a vectorisable float exp. */
#ifndef LNN_KERNEL_COMMON_H
#define LNN_KERNEL_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

/* x86-64 with GCC: one clone per instruction set, chosen at load time (no -march=native in the build). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LNN_DISPATCH __attribute__((target_clones("arch=x86-64-v3", "default")))
/* with an AVX-512 clone too: its 32 vector registers measured ~20% faster on the CfC's matrix-vector loops, and
 * its 16-float vectors ~1.3x on the LTC's per-synapse sigmoids */
#define LNN_DISPATCH_WIDE __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LNN_DISPATCH
#define LNN_DISPATCH_WIDE
#endif
/* Inlined into each clone, so that the hot loops are compiled for the clone's instruction set. */
#if defined(__GNUC__)
#define LNN_INLINE static inline __attribute__((always_inline))
#else
#define LNN_INLINE static inline
#endif

/* Denormal operands and results cost a microcode assist (~100 cycles) each on many x86 cores. The float sigmoid
 * saturates at 1 / (1 + e^88), itself denormal, and a compiler may evaluate a saturated branch's products for
 * every synapse before selecting: without flushing, that made the sparse kernel's forward 9x slower than its
 * backward. Each entry point runs with flush-to-zero and denormals-are-zero set in this thread's MXCSR and
 * restores the caller's mode on return; values below ~1e-38 (float) or ~1e-308 (double) become 0. */
#if defined(__x86_64__) || defined(__i386__)
#define LNN_FLUSH_DENORMALS 0x8040u /* FTZ (bit 15) | DAZ (bit 6) */
typedef unsigned int lnn_fp_mode;
static lnn_fp_mode lnn_fp_enter(void) {
    const unsigned int mode = _mm_getcsr();
    _mm_setcsr(mode | LNN_FLUSH_DENORMALS);
    return mode;
}
static void lnn_fp_leave(lnn_fp_mode mode) { _mm_setcsr(mode); }
#else
typedef int lnn_fp_mode;
static lnn_fp_mode lnn_fp_enter(void) { return 0; }
static void lnn_fp_leave(lnn_fp_mode mode) { (void)mode; }
#endif

/* size bytes aligned to a cache line (vector loads and stores must not straddle lines); free *base after use. */
static void *lnn_alloc(size_t size, int zero, void **base) {
    unsigned char *raw = zero ? calloc(size + 64, 1) : malloc(size + 64);
    *base = raw;
    if (raw == NULL) return NULL;
    return raw + (64 - (uintptr_t)raw % 64) % 64;
}

/* exp(x) in float, written so that loops over it vectorise: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by the
 * classic degree-6 polynomial (Cephes expf coefficients, about 1 ulp), 2^n built in the exponent bits. */
LNN_INLINE float lnn_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = x * 1.44269504088896341f + 12582912.0f; /* + 1.5 * 2^23 rounds to the nearest integer */
    n -= 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* sigmoid(z) = 1 / (1 + e^-z) in float, for loops that vectorise (the LTC kernel's hot loop: one per synapse,
 * sample and substep). e^x for x = -z clamped to [-87, 88] is 2^n e^r, n = round(x / ln2), r = x - n ln2 (ln2 in
 * two parts, so r is exact to ~1e-10), |r| <= ln2 / 2; e^r by a degree-6 polynomial fitted here for least
 * maximum relative error (Lawson's iteration; 2.0e-9 before float rounding, against 6.0e-8 = 2^-24 for half an
 * ulp at 1), evaluated by Horner in 6 FMAs (lnn_expf's form takes 8 operations); 2^n comes from the rounding
 * constant's own bits: t = x / ln2 + (1.5 * 2^23 + 127) holds 127 + n in its low mantissa bits, so t's bits
 * shifted left by 23 are the float 2^n (lnn_expf converts n back to an integer, adds and shifts). Relative error
 * of the result against float64, measured on a dense grid (tests/test_nn_ltc_native.py): 2.6 u (u = 2^-24),
 * torch's float32 sigmoid 2.45 u; most of it is 1 + e^-z rounding once more. NaN gives NaN; at the clamp the
 * result is 1, or ~6e-39, a denormal that the kernels treat as 0. */
LNN_INLINE float lnn_sigmoidf(float z) {
    float x = -z;
    x = x < -87.0f ? -87.0f : x; /* written so that NaN passes, and gives NaN */
    x = x > 88.0f ? 88.0f : x;
    const float shift = 12583039.0f; /* 1.5 * 2^23 + 127 */
    const float t = x * 1.44269504088896341f + shift;
    const float n = t - shift;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.384365372e-3f;
    p = p * r + 8.374155499e-3f;
    p = p * r + 4.166800156e-2f;
    p = p * r + 1.666643173e-1f;
    p = p * r + 4.999999404e-1f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (int32_t)((uint32_t)bits << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return 1.0f / (1.0f + p * scale);
}

#endif
