/* Fused semi-implicit LTC recurrence: forward and hand-written backward (BPTT), in float and double.
 *
 * Loaded by lnn_control/nn/ltc_native.py through ctypes; see that module for the tensor contract. One call
 * handles a slice of the batch, so Python threads can run slices in parallel (ctypes releases the GIL).
 *
 * The tensor contract and the two kernels (complete synapse sets, one sample at a time; sparse sets,
 * LTC_LANES samples at a time) are described in ltc_kernel_body.h.
 */
#include "kernel_common.h"

/* Samples per vector in the kernel for sparse synapse sets (see ltc_kernel_body.h): 16, one AVX-512 vector of
 * floats (two AVX2 vectors); with 8, the AVX-512 clone ran half-width vectors. LANES in ltc_native.py. */
#define LTC_LANES 16

#define LTC_REAL float
#define LTC_NAME(name) name##_f32
#define LTC_SIGMOID(z) lnn_sigmoidf(z)
#include "ltc_kernel_body.h"
#undef LTC_REAL
#undef LTC_NAME
#undef LTC_SIGMOID

#define LTC_REAL double
#define LTC_NAME(name) name##_f64
#define LTC_SIGMOID(z) (1.0 / (1.0 + exp(-(z))))
#include "ltc_kernel_body.h"

/* The float kernels' sigmoid over n values, for tests of its error (tests/test_nn_ltc_native.py); returns 0. */
LNN_DISPATCH_WIDE
int ltc_sigmoid_f32(int64_t n, const float *z, float *out) {
    const lnn_fp_mode mode = lnn_fp_enter();
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = lnn_sigmoidf(z[i]);
    lnn_fp_leave(mode);
    return 0;
}
