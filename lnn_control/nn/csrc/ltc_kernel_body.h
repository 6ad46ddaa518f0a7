/* Body of ltc_kernel.c for one floating type: LTC_REAL, LTC_NAME(name) and LTC_SIGMOID(z) are defined by the
 * includer.
 *
 * Shapes (row-major; B batch, T steps, K substeps, H units, I inputs, S recurrent and R sensory synapses):
 *   x (B, T, I) the (affinely mapped) input; h (B, T, K) substep lengths (0: skip); keep (B, T) or NULL;
 *   v0 (B, H); cm, leak, conductance (H); per synapse: sigma, neg_sigma_mu, w_erev, w (S) and the sensory
 *   s_sigma, s_neg_sigma_mu, s_w_erev, s_w (R); out (B, T, H) the state after each step. For the backward the
 *   forward also writes (when not NULL) trace, the state before every substep, and denominators, each
 *   substep's denominator below: buffers of B' T K H values, B' = B rounded up to a multiple of LTC_LANES, in
 *   a layout private to this file.
 *
 * Synapses are edge lists in CSR order by postsynaptic neuron: the synapses into neuron j are rowptr[j] ..
 * rowptr[j + 1] - 1, from presynaptic neuron (or input) pre[e]. With s_e = sigmoid(sigma_e u_pre(e) + nsm_e):
 *   N_j(u) = sum_e w_erev_e s_e,  D_j(u) = sum_e w_e s_e   (u = v for recurrent synapses, x_t for sensory),
 *   drive_j = leak_j + N^sensory_j(x_t),  cond_j = conductance_j + D^sensory_j(x_t),
 * and one semi-implicit substep of length h is
 *   v_j <- numer_j / denom_j = (cm_j v_j + h (drive_j + N_j(v))) / (cm_j + h (cond_j + D_j(v))).
 * Backward, with v' = numer / denom: d numer = d v' / denom, d denom = -d numer v', d N = h d numer,
 * d D = h d denom; activations are recomputed, not stored.
 *
 * Two kernels compute this. When every synapse exists ("rows"), each sample runs alone and the inner loops run
 * over a neuron's contiguous row of synapses. Otherwise ("lanes"), rows are short and scattered, so LTC_LANES
 * samples run together, one per vector lane: every synapse is then one vector operation, with no gathers, and
 * the cost is in proportion to the synapse count. The caller (ltc_native.py) chooses the layout.
 */

#define LTC_ARGS_SHARED                                                                                          \
    int64_t batch, int64_t steps, int64_t substeps, int64_t units, int64_t inputs, const int64_t *rowptr,      \
        const int64_t *pre, const LTC_REAL *sigma, const LTC_REAL *neg_sigma_mu, const LTC_REAL *w_erev,        \
        const LTC_REAL *w, const int64_t *s_rowptr, const int64_t *s_pre, const LTC_REAL *s_sigma,              \
        const LTC_REAL *s_neg_sigma_mu, const LTC_REAL *s_w_erev, const LTC_REAL *s_w, const LTC_REAL *cm
#define LTC_ARGS_FORWARD                                                                                         \
    LTC_ARGS_SHARED, const LTC_REAL *leak, const LTC_REAL *conductance, const LTC_REAL *x, const LTC_REAL *h,    \
        const LTC_REAL *keep, const LTC_REAL *v0, LTC_REAL *out, LTC_REAL *trace, LTC_REAL *denominators
#define LTC_ARGS_BACKWARD                                                                                        \
    LTC_ARGS_SHARED, const LTC_REAL *x, const LTC_REAL *h, const LTC_REAL *keep, const LTC_REAL *out,          \
        const LTC_REAL *trace, const LTC_REAL *denominators, const LTC_REAL *grad_out, LTC_REAL *grad_v0,       \
        LTC_REAL *grad_x, LTC_REAL *grad_cm, LTC_REAL *grad_leak, LTC_REAL *grad_conductance,                   \
        LTC_REAL *grad_sigma, LTC_REAL *grad_neg_sigma_mu, LTC_REAL *grad_w_erev, LTC_REAL *grad_w,             \
        LTC_REAL *grad_s_sigma, LTC_REAL *grad_s_neg_sigma_mu, LTC_REAL *grad_s_w_erev, LTC_REAL *grad_s_w
#define LTC_PASS_FORWARD                                                                                         \
    batch, steps, substeps, units, inputs, rowptr, pre, sigma, neg_sigma_mu, w_erev, w, s_rowptr, s_pre,        \
        s_sigma, s_neg_sigma_mu, s_w_erev, s_w, cm, leak, conductance, x, h, keep, v0, out, trace, denominators
#define LTC_PASS_BACKWARD                                                                                        \
    batch, steps, substeps, units, inputs, rowptr, pre, sigma, neg_sigma_mu, w_erev, w, s_rowptr, s_pre,        \
        s_sigma, s_neg_sigma_mu, s_w_erev, s_w, cm, x, h, keep, out, trace, denominators, grad_out, grad_v0,    \
        grad_x, grad_cm, grad_leak, grad_conductance, grad_sigma, grad_neg_sigma_mu, grad_w_erev, grad_w,       \
        grad_s_sigma, grad_s_neg_sigma_mu, grad_s_w_erev, grad_s_w

/* ------------------------------------------------------------------------------------------------- rows */

/* num, den (n_post) of a complete synapse set (row j: synapses j n_pre .. (j + 1) n_pre - 1) from u (n_pre). */
LNN_INLINE void LTC_NAME(rows_synapses)(int64_t n_post, int64_t n_pre, const LTC_REAL *u, const LTC_REAL *sigma,
                                        const LTC_REAL *neg_sigma_mu, const LTC_REAL *w_erev, const LTC_REAL *w,
                                        LTC_REAL *num_out, LTC_REAL *den_out) {
    for (int64_t j = 0; j < n_post; j++) {
        const int64_t e0 = j * n_pre;
        const LTC_REAL *sg = sigma + e0, *nsm = neg_sigma_mu + e0, *we = w_erev + e0, *ww = w + e0;
        LTC_REAL num = 0, den = 0;
#pragma omp simd reduction(+ : num, den)
        for (int64_t e = 0; e < n_pre; e++) {
            const LTC_REAL a = LTC_SIGMOID(sg[e] * u[e] + nsm[e]);
            num += a * we[e];
            den += a * ww[e];
        }
        num_out[j] = num;
        den_out[j] = den;
    }
}

/* Backward of rows_synapses given d num, d den (n_post): adds into the synapse gradients and grad_u (n_pre).
 * act (n_pre) is scratch: the activations get their own loop, which vectorises where a fused one did not. */
LNN_INLINE void LTC_NAME(rows_synapses_backward)(int64_t n_post, int64_t n_pre, const LTC_REAL *u,
                                                 const LTC_REAL *g_num, const LTC_REAL *g_den,
                                                 const LTC_REAL *sigma, const LTC_REAL *neg_sigma_mu,
                                                 const LTC_REAL *w_erev, const LTC_REAL *w, LTC_REAL *grad_sigma,
                                                 LTC_REAL *grad_neg_sigma_mu, LTC_REAL *grad_w_erev,
                                                 LTC_REAL *grad_w, LTC_REAL *grad_u, LTC_REAL *act) {
    for (int64_t j = 0; j < n_post; j++) {
        const int64_t e0 = j * n_pre;
        const LTC_REAL gn = g_num[j], gd = g_den[j];
        const LTC_REAL *sg = sigma + e0, *nsm = neg_sigma_mu + e0, *we = w_erev + e0, *ww = w + e0;
        LTC_REAL *g_sg = grad_sigma + e0, *g_nsm = grad_neg_sigma_mu + e0, *g_we = grad_w_erev + e0;
        LTC_REAL *g_w = grad_w + e0;
#pragma omp simd
        for (int64_t e = 0; e < n_pre; e++) act[e] = LTC_SIGMOID(sg[e] * u[e] + nsm[e]);
#pragma omp simd
        for (int64_t e = 0; e < n_pre; e++) {
            const LTC_REAL a = act[e];
            const LTC_REAL gz = (gn * we[e] + gd * ww[e]) * a * (1 - a);
            g_we[e] += a * gn;
            g_w[e] += a * gd;
            g_sg[e] += gz * u[e];
            g_nsm[e] += gz;
            grad_u[e] += gz * sg[e];
        }
    }
}

LNN_INLINE int LTC_NAME(rows_forward)(LTC_ARGS_FORWARD) {
    const int64_t H = units;
    void *base;
    LTC_REAL *work = lnn_alloc((size_t)(7 * H) * sizeof(LTC_REAL), 0, &base);
    if (work == NULL) return 1;
    LTC_REAL *v = work, *next = work + H, *num = work + 2 * H, *den = work + 3 * H;
    LTC_REAL *drive = work + 4 * H, *cond = work + 5 * H, *denom = work + 6 * H;
    (void)rowptr, (void)pre, (void)s_rowptr, (void)s_pre;
    for (int64_t b = 0; b < batch; b++) {
        memcpy(v, v0 + b * H, (size_t)H * sizeof(LTC_REAL));
        for (int64_t t = 0; t < steps; t++) {
            const int64_t bt = b * steps + t;
            if (keep != NULL) {
                const LTC_REAL k = keep[bt];
                for (int64_t j = 0; j < H; j++) v[j] *= k;
            }
            LTC_NAME(rows_synapses)(H, inputs, x + bt * inputs, s_sigma, s_neg_sigma_mu, s_w_erev, s_w, drive,
                                    cond);
            for (int64_t j = 0; j < H; j++) {
                drive[j] += leak[j];
                cond[j] += conductance[j];
            }
            for (int64_t s = 0; s < substeps; s++) {
                const int64_t bts = bt * substeps + s;
                const LTC_REAL hs = h[bts];
                if (trace != NULL) memcpy(trace + bts * H, v, (size_t)H * sizeof(LTC_REAL));
                if (hs == 0) continue; /* a zero substep leaves the state exactly as it is */
                LTC_NAME(rows_synapses)(H, H, v, sigma, neg_sigma_mu, w_erev, w, num, den);
#pragma omp simd
                for (int64_t j = 0; j < H; j++) {
                    denom[j] = cm[j] + hs * (cond[j] + den[j]);
                    next[j] = (cm[j] * v[j] + hs * (drive[j] + num[j])) / denom[j];
                }
                if (denominators != NULL) memcpy(denominators + bts * H, denom, (size_t)H * sizeof(LTC_REAL));
                LTC_REAL *swap = v;
                v = next;
                next = swap;
            }
            memcpy(out + bt * H, v, (size_t)H * sizeof(LTC_REAL));
        }
    }
    free(base);
    return 0;
}

LNN_INLINE int LTC_NAME(rows_backward)(LTC_ARGS_BACKWARD) {
    const int64_t H = units, widest = H > inputs ? H : inputs;
    void *base;
    LTC_REAL *work = lnn_alloc((size_t)(6 * H + widest) * sizeof(LTC_REAL), 0, &base);
    if (work == NULL) return 1;
    LTC_REAL *gv = work, *gprev = work + H, *g_num = work + 2 * H, *g_den = work + 3 * H;
    LTC_REAL *g_drive = work + 4 * H, *g_cond = work + 5 * H, *act = work + 6 * H;
    (void)rowptr, (void)pre, (void)s_rowptr, (void)s_pre;
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t j = 0; j < H; j++) gv[j] = 0;
        for (int64_t t = steps - 1; t >= 0; t--) {
            const int64_t bt = b * steps + t;
            for (int64_t j = 0; j < H; j++) {
                gv[j] += grad_out[bt * H + j];
                g_drive[j] = 0;
                g_cond[j] = 0;
            }
            for (int64_t s = substeps - 1; s >= 0; s--) {
                const int64_t bts = bt * substeps + s;
                const LTC_REAL hs = h[bts];
                if (hs == 0) continue; /* the identity */
                const LTC_REAL *v = trace + bts * H, *denom = denominators + bts * H;
                const LTC_REAL *v_next = s + 1 < substeps ? trace + (bts + 1) * H : out + bt * H;
#pragma omp simd
                for (int64_t j = 0; j < H; j++) {
                    const LTC_REAL g_numer = gv[j] / denom[j];
                    const LTC_REAL g_denom = -g_numer * v_next[j];
                    grad_cm[j] += g_numer * v[j] + g_denom;
                    gprev[j] = g_numer * cm[j];
                    g_num[j] = g_numer * hs;
                    g_den[j] = g_denom * hs;
                    g_drive[j] += g_num[j];
                    g_cond[j] += g_den[j];
                }
                LTC_NAME(rows_synapses_backward)(H, H, v, g_num, g_den, sigma, neg_sigma_mu, w_erev, w,
                                                 grad_sigma, grad_neg_sigma_mu, grad_w_erev, grad_w, gprev, act);
                LTC_REAL *swap = gv;
                gv = gprev;
                gprev = swap;
            }
            /* the step's sensory and leak terms, which all its substeps shared */
            LTC_REAL *grad_x_t = grad_x + bt * inputs;
            for (int64_t i = 0; i < inputs; i++) grad_x_t[i] = 0;
            for (int64_t j = 0; j < H; j++) {
                grad_leak[j] += g_drive[j];
                grad_conductance[j] += g_cond[j];
            }
            LTC_NAME(rows_synapses_backward)(H, inputs, x + bt * inputs, g_drive, g_cond, s_sigma, s_neg_sigma_mu,
                                             s_w_erev, s_w, grad_s_sigma, grad_s_neg_sigma_mu, grad_s_w_erev,
                                             grad_s_w, grad_x_t, act);
            if (keep != NULL) {
                const LTC_REAL k = keep[bt];
                for (int64_t j = 0; j < H; j++) gv[j] *= k;
            }
        }
        memcpy(grad_v0 + b * H, gv, (size_t)H * sizeof(LTC_REAL));
    }
    free(base);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ lanes */
/* Arrays here hold LTC_LANES values per entry, one per sample of the group: u[i * LTC_LANES + l]. */

/* num, den (n_post lanes) of a synapse set from u (lanes). Per row, the products go to scratch (2 x the row's
 * length x lanes) first and are summed in vector registers after, so no sum waits on a store. */
typedef LTC_REAL LTC_NAME(lanes_t) __attribute__((vector_size(LTC_LANES * sizeof(LTC_REAL))));

LNN_INLINE void LTC_NAME(lanes_synapses)(int64_t n_post, const int64_t *rowptr, const int64_t *pre,
                                         const LTC_REAL *u, const LTC_REAL *sigma, const LTC_REAL *neg_sigma_mu,
                                         const LTC_REAL *w_erev, const LTC_REAL *w, LTC_REAL *num, LTC_REAL *den,
                                         LTC_REAL *scratch) {
    for (int64_t j = 0; j < n_post; j++) {
        const int64_t e0 = rowptr[j], n = rowptr[j + 1] - e0;
        LTC_REAL *products_num = scratch, *products_den = scratch + n * LTC_LANES;
        for (int64_t k = 0; k < n; k++) {
            const int64_t e = e0 + k;
            const LTC_REAL *ue = u + pre[e] * LTC_LANES;
            const LTC_REAL sg = sigma[e], nsm = neg_sigma_mu[e], we = w_erev[e], ww = w[e];
            LTC_REAL *pn = products_num + k * LTC_LANES, *pd = products_den + k * LTC_LANES;
#pragma omp simd
            for (int l = 0; l < LTC_LANES; l++) {
                const LTC_REAL a = LTC_SIGMOID(sg * ue[l] + nsm);
                pn[l] = a * we;
                pd[l] = a * ww;
            }
        }
        LTC_NAME(lanes_t) sum_num = {0}, sum_den = {0}, part;
        for (int64_t k = 0; k < n; k++) {
            memcpy(&part, products_num + k * LTC_LANES, sizeof part);
            sum_num += part;
            memcpy(&part, products_den + k * LTC_LANES, sizeof part);
            sum_den += part;
        }
        memcpy(num + j * LTC_LANES, &sum_num, sizeof sum_num);
        memcpy(den + j * LTC_LANES, &sum_den, sizeof sum_den);
    }
}

/* Backward of lanes_synapses given d num, d den (n_post lanes): adds into per-lane synapse gradient
 * accumulators (acc: sigma, neg_sigma_mu, w_erev, w; each synapses x lanes) and into grad_u (lanes). */
LNN_INLINE void LTC_NAME(lanes_synapses_backward)(int64_t n_post, const int64_t *rowptr, const int64_t *pre,
                                                  const LTC_REAL *u, const LTC_REAL *g_num, const LTC_REAL *g_den,
                                                  const LTC_REAL *sigma, const LTC_REAL *neg_sigma_mu,
                                                  const LTC_REAL *w_erev, const LTC_REAL *w, LTC_REAL *acc,
                                                  LTC_REAL *grad_u) {
    const int64_t stride = rowptr[n_post] * LTC_LANES;
    for (int64_t j = 0; j < n_post; j++) {
        const LTC_REAL *gn = g_num + j * LTC_LANES, *gd = g_den + j * LTC_LANES;
        for (int64_t e = rowptr[j]; e < rowptr[j + 1]; e++) {
            const LTC_REAL *ue = u + pre[e] * LTC_LANES;
            LTC_REAL *gu = grad_u + pre[e] * LTC_LANES;
            LTC_REAL *g_sg = acc + e * LTC_LANES, *g_nsm = g_sg + stride, *g_we = g_nsm + stride;
            LTC_REAL *g_w = g_we + stride;
            const LTC_REAL sg = sigma[e], nsm = neg_sigma_mu[e], we = w_erev[e], ww = w[e];
#pragma omp simd
            for (int l = 0; l < LTC_LANES; l++) {
                const LTC_REAL a = LTC_SIGMOID(sg * ue[l] + nsm);
                const LTC_REAL gz = (gn[l] * we + gd[l] * ww) * a * (1 - a);
                g_we[l] += a * gn[l];
                g_w[l] += a * gd[l];
                g_sg[l] += gz * ue[l];
                g_nsm[l] += gz;
                gu[l] += gz * sg;
            }
        }
    }
}

/* Loads step t of the group starting at sample b0 (n samples, the other lanes padded) into lanes. */
LNN_INLINE void LTC_NAME(lanes_load_step)(int64_t b0, int64_t n, int64_t t, int64_t steps, int64_t substeps,
                                          int64_t inputs, const LTC_REAL *x, const LTC_REAL *h,
                                          const LTC_REAL *keep, LTC_REAL *x_l, LTC_REAL *h_l, LTC_REAL *keep_l) {
    for (int l = 0; l < LTC_LANES; l++) {
        const int64_t bt = (b0 + l) * steps + t;
        const int real = l < n;
        keep_l[l] = real && keep != NULL ? keep[bt] : 1;
        for (int64_t i = 0; i < inputs; i++) x_l[i * LTC_LANES + l] = real ? x[bt * inputs + i] : 0;
        for (int64_t s = 0; s < substeps; s++) h_l[s * LTC_LANES + l] = real ? h[bt * substeps + s] : 0;
    }
}

LNN_INLINE int LTC_NAME(lanes_any)(const LTC_REAL *values) {
    int any = 0;
    for (int l = 0; l < LTC_LANES; l++) any |= values[l] != 0;
    return any;
}

LNN_INLINE int LTC_NAME(lanes_forward)(LTC_ARGS_FORWARD) {
    const int64_t H = units, L = LTC_LANES, HL = units * LTC_LANES, block = steps * substeps * HL;
    void *base;
    const int64_t widest = units > inputs ? units : inputs; /* the longest possible row */
    LTC_REAL *work = lnn_alloc((size_t)(7 * HL + (inputs + substeps + 1 + 2 * widest) * L) * sizeof(LTC_REAL), 0, &base);
    if (work == NULL) return 1;
    LTC_REAL *v = work, *next = work + HL, *num = work + 2 * HL, *den = work + 3 * HL, *drive = work + 4 * HL;
    LTC_REAL *cond = work + 5 * HL, *denom = work + 6 * HL, *x_l = work + 7 * HL, *h_l = x_l + inputs * L;
    LTC_REAL *keep_l = h_l + substeps * L, *scratch = keep_l + L;
    for (int64_t b0 = 0; b0 < batch; b0 += L) {
        const int64_t n = batch - b0 < L ? batch - b0 : L;
        LTC_REAL *trace_g = trace != NULL ? trace + b0 / L * block : NULL;
        LTC_REAL *denominators_g = denominators != NULL ? denominators + b0 / L * block : NULL;
        for (int64_t j = 0; j < H; j++)
            for (int l = 0; l < L; l++) v[j * L + l] = l < n ? v0[(b0 + l) * H + j] : 0;
        for (int64_t t = 0; t < steps; t++) {
            LTC_NAME(lanes_load_step)(b0, n, t, steps, substeps, inputs, x, h, keep, x_l, h_l, keep_l);
            for (int64_t j = 0; j < H; j++)
                for (int l = 0; l < L; l++) v[j * L + l] *= keep_l[l];
            LTC_NAME(lanes_synapses)(H, s_rowptr, s_pre, x_l, s_sigma, s_neg_sigma_mu, s_w_erev, s_w, drive, cond,
                                     scratch);
            for (int64_t j = 0; j < H; j++)
                for (int l = 0; l < L; l++) {
                    drive[j * L + l] += leak[j];
                    cond[j * L + l] += conductance[j];
                }
            for (int64_t s = 0; s < substeps; s++) {
                const LTC_REAL *hs = h_l + s * L;
                const int64_t at = (t * substeps + s) * HL;
                if (trace_g != NULL) memcpy(trace_g + at, v, (size_t)HL * sizeof(LTC_REAL));
                if (!LTC_NAME(lanes_any)(hs)) continue;
                LTC_NAME(lanes_synapses)(H, rowptr, pre, v, sigma, neg_sigma_mu, w_erev, w, num, den, scratch);
                for (int64_t j = 0; j < H; j++) {
                    const LTC_REAL c = cm[j];
#pragma omp simd
                    for (int l = 0; l < L; l++) {
                        const int64_t k = j * L + l;
                        denom[k] = c + hs[l] * (cond[k] + den[k]);
                        const LTC_REAL updated = (c * v[k] + hs[l] * (drive[k] + num[k])) / denom[k];
                        next[k] = hs[l] == 0 ? v[k] : updated; /* a zero substep leaves the state as it is */
                    }
                }
                if (denominators_g != NULL) memcpy(denominators_g + at, denom, (size_t)HL * sizeof(LTC_REAL));
                LTC_REAL *swap = v;
                v = next;
                next = swap;
            }
            for (int l = 0; l < n; l++)
                for (int64_t j = 0; j < H; j++) out[((b0 + l) * steps + t) * H + j] = v[j * L + l];
        }
    }
    free(base);
    return 0;
}

LNN_INLINE int LTC_NAME(lanes_backward)(LTC_ARGS_BACKWARD) {
    const int64_t H = units, L = LTC_LANES, HL = units * LTC_LANES, block = steps * substeps * HL;
    const int64_t S = rowptr[H], R = s_rowptr[H];
    const int64_t n_acc = (3 * H + 4 * S + 4 * R) * L; /* per lane: cm, leak, conductance, recurrent, sensory */
    void *base;
    LTC_REAL *work = lnn_alloc((size_t)(7 * HL + (2 * inputs + substeps + 1) * L + n_acc) * sizeof(LTC_REAL), 1, &base);
    if (work == NULL) return 1;
    LTC_REAL *gv = work, *gprev = work + HL, *g_num = work + 2 * HL, *g_den = work + 3 * HL;
    LTC_REAL *g_drive = work + 4 * HL, *g_cond = work + 5 * HL, *out_l = work + 6 * HL, *x_l = work + 7 * HL;
    LTC_REAL *gx_l = x_l + inputs * L, *h_l = gx_l + inputs * L, *keep_l = h_l + substeps * L;
    LTC_REAL *acc_cm = keep_l + L, *acc_leak = acc_cm + HL, *acc_cond = acc_leak + HL;
    LTC_REAL *acc_recurrent = acc_cond + HL, *acc_sensory = acc_recurrent + 4 * S * L;
    LTC_REAL *const gv_base = gv, *const gprev_base = gprev;
    for (int64_t b0 = 0; b0 < batch; b0 += L) {
        const int64_t n = batch - b0 < L ? batch - b0 : L;
        const LTC_REAL *trace_g = trace + b0 / L * block, *denominators_g = denominators + b0 / L * block;
        gv = gv_base;
        gprev = gprev_base;
        for (int64_t k = 0; k < HL; k++) gv[k] = 0;
        for (int64_t t = steps - 1; t >= 0; t--) {
            LTC_NAME(lanes_load_step)(b0, n, t, steps, substeps, inputs, x, h, keep, x_l, h_l, keep_l);
            for (int64_t j = 0; j < H; j++)
                for (int l = 0; l < L; l++) {
                    const int64_t bth = ((b0 + l) * steps + t) * H + j;
                    out_l[j * L + l] = l < n ? out[bth] : 0;
                    gv[j * L + l] += l < n ? grad_out[bth] : 0;
                }
            for (int64_t k = 0; k < HL; k++) g_drive[k] = g_cond[k] = 0;
            for (int64_t s = substeps - 1; s >= 0; s--) {
                const LTC_REAL *hs = h_l + s * L;
                if (!LTC_NAME(lanes_any)(hs)) continue; /* the identity */
                const int64_t at = (t * substeps + s) * HL;
                const LTC_REAL *v = trace_g + at, *denom = denominators_g + at;
                const LTC_REAL *v_next = s + 1 < substeps ? trace_g + at + HL : out_l;
                for (int64_t j = 0; j < H; j++) {
                    const LTC_REAL c = cm[j];
#pragma omp simd
                    for (int l = 0; l < L; l++) {
                        const int64_t k = j * L + l;
                        const LTC_REAL g_numer = gv[k] / denom[k];
                        const LTC_REAL g_denom = -g_numer * v_next[k];
                        const int moved = hs[l] != 0; /* lanes with a zero substep pass their gradient on */
                        acc_cm[k] += moved ? g_numer * v[k] + g_denom : 0;
                        gprev[k] = moved ? g_numer * c : gv[k];
                        g_num[k] = g_numer * hs[l];
                        g_den[k] = g_denom * hs[l];
                        g_drive[k] += g_num[k];
                        g_cond[k] += g_den[k];
                    }
                }
                LTC_NAME(lanes_synapses_backward)(H, rowptr, pre, v, g_num, g_den, sigma, neg_sigma_mu, w_erev, w,
                                                  acc_recurrent, gprev);
                LTC_REAL *swap = gv;
                gv = gprev;
                gprev = swap;
            }
            for (int64_t k = 0; k < HL; k++) {
                acc_leak[k] += g_drive[k];
                acc_cond[k] += g_cond[k];
            }
            for (int64_t k = 0; k < inputs * L; k++) gx_l[k] = 0;
            LTC_NAME(lanes_synapses_backward)(H, s_rowptr, s_pre, x_l, g_drive, g_cond, s_sigma, s_neg_sigma_mu,
                                              s_w_erev, s_w, acc_sensory, gx_l);
            for (int l = 0; l < n; l++)
                for (int64_t i = 0; i < inputs; i++)
                    grad_x[((b0 + l) * steps + t) * inputs + i] = gx_l[i * L + l];
            for (int64_t j = 0; j < H; j++)
                for (int l = 0; l < L; l++) gv[j * L + l] *= keep_l[l];
        }
        for (int l = 0; l < n; l++)
            for (int64_t j = 0; j < H; j++) grad_v0[(b0 + l) * H + j] = gv[j * L + l];
    }
    /* reduce the per-lane accumulators into the caller's gradients */
    LTC_REAL *targets[11] = {grad_cm,    grad_leak,      grad_conductance,    grad_sigma,
                             grad_neg_sigma_mu, grad_w_erev, grad_w,        grad_s_sigma,
                             grad_s_neg_sigma_mu, grad_s_w_erev, grad_s_w};
    const int64_t sizes[11] = {H, H, H, S, S, S, S, R, R, R, R};
    const LTC_REAL *source = acc_cm;
    for (int a = 0; a < 11; a++)
        for (int64_t e = 0; e < sizes[a]; e++, source += L) {
            LTC_REAL total = 0;
            for (int l = 0; l < L; l++) total += source[l];
            targets[a][e] += total;
        }
    free(base);
    return 0;
}

/* ------------------------------------------------------------------------------------------ entry points */
/* One forward and one backward per layout; the caller chooses: "rows" needs complete synapse sets (rowptr[j] =
 * j n_pre for both), "lanes" takes any. Each returns 0, or 1 when its work buffer cannot be allocated. */

LNN_DISPATCH_WIDE
int LTC_NAME(ltc_rows_forward)(LTC_ARGS_FORWARD) {
    const lnn_fp_mode mode = lnn_fp_enter();
    const int status = LTC_NAME(rows_forward)(LTC_PASS_FORWARD);
    lnn_fp_leave(mode);
    return status;
}

LNN_DISPATCH_WIDE
int LTC_NAME(ltc_lanes_forward)(LTC_ARGS_FORWARD) {
    const lnn_fp_mode mode = lnn_fp_enter();
    const int status = LTC_NAME(lanes_forward)(LTC_PASS_FORWARD);
    lnn_fp_leave(mode);
    return status;
}

/* Gradients of a scalar loss given grad_out = dL/d out (B, T, H), from the forward's out, trace and
 * denominators. Writes grad_v0 (B, H) and grad_x (B, T, I); adds into grad_cm, grad_leak, grad_conductance (H)
 * and the per-synapse gradients of sigma, neg_sigma_mu, w_erev and w (S) and of their sensory counterparts (R):
 * the caller zeroes those. */
LNN_DISPATCH_WIDE
int LTC_NAME(ltc_rows_backward)(LTC_ARGS_BACKWARD) {
    const lnn_fp_mode mode = lnn_fp_enter();
    const int status = LTC_NAME(rows_backward)(LTC_PASS_BACKWARD);
    lnn_fp_leave(mode);
    return status;
}

LNN_DISPATCH_WIDE
int LTC_NAME(ltc_lanes_backward)(LTC_ARGS_BACKWARD) {
    const lnn_fp_mode mode = lnn_fp_enter();
    const int status = LTC_NAME(lanes_backward)(LTC_PASS_BACKWARD);
    lnn_fp_leave(mode);
    return status;
}

#undef LTC_ARGS_SHARED
#undef LTC_ARGS_FORWARD
#undef LTC_ARGS_BACKWARD
#undef LTC_PASS_FORWARD
#undef LTC_PASS_BACKWARD
