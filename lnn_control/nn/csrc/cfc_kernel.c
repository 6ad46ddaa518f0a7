/* Fused CfC recurrence: forward and hand-written backward (BPTT), in float and double.
 *
 * Loaded by lnn_control/nn/cfc_native.py through ctypes; see that module for the tensor contract. One call
 * handles a slice of the batch, so Python threads can run slices in parallel (ctypes releases the GIL).
 * CFC_LANES samples run together, one per vector lane, so every weight is one broadcast multiply-add for all
 * of them; at the batch sizes of recurrent RL (a few sequences) the loop costs what its arithmetic costs.
 */
#include "kernel_common.h"

#define CFC_LANES 8

/* float tanh and sigmoid from lnn_expf (vectorisable; absolute error ~1e-7) */
LNN_INLINE float cfc_tanhf(float x) {
    const float e = lnn_expf(-2.0f * fabsf(x));
    const float t = (1.0f - e) / (1.0f + e);
    return x < 0 ? -t : t;
}

#define CFC_REAL float
#define CFC_BLOCK 8 /* one vector register per output: 8 accumulators */
#define CFC_NAME(name) name##_f32
#define CFC_EXP(z) lnn_expf(z)
#define CFC_TANH(z) cfc_tanhf(z)
#include "cfc_kernel_body.h"
#undef CFC_REAL
#undef CFC_BLOCK
#undef CFC_NAME
#undef CFC_EXP
#undef CFC_TANH

#define CFC_REAL double
#define CFC_BLOCK 4 /* two vector registers per output */
#define CFC_NAME(name) name##_f64
#define CFC_EXP(z) exp(z)
#define CFC_TANH(z) tanh(z)
#include "cfc_kernel_body.h"
