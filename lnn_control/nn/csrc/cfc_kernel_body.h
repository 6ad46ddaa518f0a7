/* Body of cfc_kernel.c for one floating type: CFC_REAL, CFC_NAME(name), CFC_EXP(z) and CFC_TANH(z) are defined
 * by the includer.
 *
 * A CfC is a chain of blocks (one for an unwired cell; one per wiring layer otherwise). Block l has H_l neurons,
 * reads C_l = I_l + H_l values u = [input, own state] (I_0 = 0: block 0's input part arrives precomputed as
 * pre0; block l > 0 reads block l - 1's new state of the same step), and computes
 *   z = init + W u            W (P_l, C_l); init = pre0_t for block 0, else the bias b (P_l)
 *   heads = bh + Wh (tanh(z) * mask_t)   with a backbone (Wh (Q_l, P_l); mask: dropout, block 0 only),
 *   heads = z                            without one (then P_l = Q_l),
 * Q_l = 4 H_l heads [ff1, ff2, t_a, t_b] (modes 0 "default" and 1 "no_gate") or H_l (mode 2 "pure"), and
 *   default: h' = ff1 + g (ff2 - ff1), no_gate: h' = ff1 + g ff2, with ff = tanh(.), g = sigmoid(t_a dt + t_b);
 *   pure:    h' = A - A e f, e = exp(-dt (w_tau + |f|)), f = heads.
 * keep (B, T) multiplies the state before each step (0: reset), dt (B, T) per sample and step.
 *
 * Shapes (row-major; B batch, T steps, H = sum H_l, G = ceil(B / CFC_LANES) lane groups):
 *   dims: per block [I_l, H_l, P_l, backbone (0/1), mode]; weights: per block 8 pointers
 *   [W, W^T, b, Wh, Wh^T, bh, A, w_tau] (NULL where unused); pre0 (B, T, P_0); mask (B, T, P_0) or NULL;
 *   h0 (B, H); out (B, T, H) the state after each step.
 *   trace (G, T, F, CFC_LANES) (private layout), F = sum_l Q_l + backbone_l P_l: per block the heads, then
 *   tanh(z); grads (B, T, F), the same F: per block d z (P_l), then d heads (Q_l, backbone only); act (B, T, P_0)
 *   the backbone's output tanh(z) * mask (backbone only, else NULL).
 * The backward writes grad_h0 (B, H), grads and act, and adds into grad_A, grad_w_tau (H, pure blocks): the
 * weight gradients are products of grads with the inputs over all steps, which the caller computes at once.
 */

typedef CFC_REAL CFC_NAME(vec) __attribute__((vector_size(CFC_LANES * sizeof(CFC_REAL))));
#define CFC_VEC CFC_NAME(vec)

typedef struct {
    int64_t inputs, hidden, width, backbone, mode, heads, concat, offset, trace_offset;
    const CFC_REAL *w, *w_t, *b, *wh, *wh_t, *bh, *a, *w_tau;
} CFC_NAME(block);

/* out (n_out) = init (or 0) + w u, w (n_out, n_in) row-major, u (n_in) with pairs vectors per row (one per lane
 * group: 1 or 2). CFC_BLOCK / pairs outputs per pass over u: as many independent multiply-add chains as hide the
 * instruction's latency; with two groups every weight loaded feeds two of them. */
LNN_INLINE void CFC_NAME(matvec)(int64_t n_out, int64_t n_in, const CFC_REAL *w, const CFC_VEC *u,
                                 const CFC_VEC *init, CFC_VEC *out, int pairs) {
    const CFC_VEC zero = {0};
    int64_t o = 0;
    if (pairs == 2) {
        enum { R = CFC_BLOCK / 2 };
        for (; o + R <= n_out; o += R) {
            CFC_VEC a0[R], a1[R];
            const CFC_REAL *rows[R];
            for (int r = 0; r < R; r++) {
                a0[r] = init ? init[2 * (o + r)] : zero;
                a1[r] = init ? init[2 * (o + r) + 1] : zero;
                rows[r] = w + (o + r) * n_in;
            }
            for (int64_t c = 0; c < n_in; c++) {
                const CFC_VEC x0 = u[2 * c], x1 = u[2 * c + 1];
                for (int r = 0; r < R; r++) {
                    const CFC_REAL wr = rows[r][c];
                    a0[r] += wr * x0;
                    a1[r] += wr * x1;
                }
            }
            for (int r = 0; r < R; r++) out[2 * (o + r)] = a0[r], out[2 * (o + r) + 1] = a1[r];
        }
        for (; o < n_out; o++) {
            CFC_VEC s0 = init ? init[2 * o] : zero, s1 = init ? init[2 * o + 1] : zero;
            const CFC_REAL *w0 = w + o * n_in;
            for (int64_t c = 0; c < n_in; c++) s0 += w0[c] * u[2 * c], s1 += w0[c] * u[2 * c + 1];
            out[2 * o] = s0, out[2 * o + 1] = s1;
        }
        return;
    }
    for (; o + CFC_BLOCK <= n_out; o += CFC_BLOCK) {
        CFC_VEC acc[CFC_BLOCK];
        const CFC_REAL *rows[CFC_BLOCK];
        for (int r = 0; r < CFC_BLOCK; r++) {
            acc[r] = init ? init[o + r] : zero;
            rows[r] = w + (o + r) * n_in;
        }
        for (int64_t c = 0; c < n_in; c++) {
            const CFC_VEC x = u[c];
            for (int r = 0; r < CFC_BLOCK; r++) acc[r] += rows[r][c] * x;
        }
        for (int r = 0; r < CFC_BLOCK; r++) out[o + r] = acc[r];
    }
    for (; o < n_out; o++) {
        CFC_VEC a0 = init ? init[o] : zero;
        const CFC_REAL *w0 = w + o * n_in;
        for (int64_t c = 0; c < n_in; c++) a0 += w0[c] * u[c];
        out[o] = a0;
    }
}

/* Reads the block descriptions; returns the total state width H and sets *features (F) and *widest. */
LNN_INLINE int64_t CFC_NAME(blocks)(int64_t n_blocks, const int64_t *dims, const CFC_REAL *const *weights,
                                    CFC_NAME(block) *blocks, int64_t *features, int64_t *widest) {
    int64_t offset = 0, trace_offset = 0, wide = 1;
    for (int64_t i = 0; i < n_blocks; i++) {
        CFC_NAME(block) *k = blocks + i;
        const int64_t *d = dims + 5 * i;
        const CFC_REAL *const *p = weights + 8 * i;
        k->inputs = d[0], k->hidden = d[1], k->width = d[2], k->backbone = d[3], k->mode = d[4];
        k->heads = (k->mode == 2 ? 1 : 4) * k->hidden;
        k->concat = k->inputs + k->hidden;
        k->offset = offset;
        k->trace_offset = trace_offset;
        k->w = p[0], k->w_t = p[1], k->b = p[2], k->wh = p[3], k->wh_t = p[4], k->bh = p[5], k->a = p[6];
        k->w_tau = p[7];
        offset += k->hidden;
        trace_offset += k->heads + (k->backbone ? k->width : 0);
        const int64_t sizes[3] = {k->concat, k->width, k->heads};
        for (int s = 0; s < 3; s++) wide = sizes[s] > wide ? sizes[s] : wide;
    }
    *features = trace_offset;
    *widest = wide;
    return offset;
}

/* Lanes (lw per row) of rows (n_rows values per sample, sample-major source) of step t for the samples from b0
 * (n real ones, the other lanes filled). */
LNN_INLINE void CFC_NAME(gather)(int64_t b0, int64_t n, int64_t lw, int64_t t, int64_t steps, int64_t n_rows,
                                 const CFC_REAL *source, CFC_REAL fill, CFC_REAL *lanes) {
    for (int64_t l = 0; l < lw; l++) {
        const CFC_REAL *row = source + ((b0 + l) * steps + t) * n_rows;
        for (int64_t i = 0; i < n_rows; i++) lanes[i * lw + l] = l < n ? row[i] : fill;
    }
}

/* Inverse of gather for the n real samples: lanes (n_rows x lw) into rows of step t of dest. */
LNN_INLINE void CFC_NAME(scatter)(int64_t b0, int64_t n, int64_t lw, int64_t t, int64_t steps, int64_t n_rows,
                                  const CFC_REAL *lanes, CFC_REAL *dest) {
    for (int64_t l = 0; l < n; l++) {
        CFC_REAL *row = dest + ((b0 + l) * steps + t) * n_rows;
        for (int64_t i = 0; i < n_rows; i++) row[i] = lanes[i * lw + l];
    }
}

/* Samples run in units of one or two lane groups ("pairs"), 2 wherever more than one group remains: the
 * forward and the backward make the same choice, so the trace's private layout agrees. */
LNN_INLINE int CFC_NAME(pairs)(int64_t batch, int64_t b0) { return batch - b0 > CFC_LANES ? 2 : 1; }

LNN_INLINE int CFC_NAME(forward)(int64_t batch, int64_t steps, int64_t n_blocks, const int64_t *dims,
                                 const CFC_REAL *const *weights, const CFC_REAL *pre0, const CFC_REAL *dt,
                                 const CFC_REAL *keep, const CFC_REAL *mask, const CFC_REAL *h0, CFC_REAL *out,
                                 CFC_REAL *trace) {
    CFC_NAME(block) blocks[n_blocks];
    int64_t F, widest;
    const int64_t H = CFC_NAME(blocks)(n_blocks, dims, weights, blocks, &F, &widest);
    int64_t n_bias = 0;
    for (int64_t i = 0; i < n_blocks; i++) n_bias += blocks[i].width + blocks[i].heads;
    const int64_t P0 = blocks[0].width;
    void *base;
    /* per group of a pair: h_old, h_new (H); u, z, act, heads, init (widest); dt, keep (1); mask (P0); then
     * the biases broadcast for one and for two groups (3 n_bias) */
    const int64_t per_pair = 2 * (2 * H + 5 * widest + 2 + P0);
    CFC_VEC *work = lnn_alloc((size_t)(per_pair + 3 * n_bias) * sizeof(CFC_VEC), 1, &base);
    if (work == NULL) return 1;
    CFC_VEC *h_old = work, *h_new = h_old + 2 * H, *u = h_new + 2 * H, *z = u + 2 * widest;
    CFC_VEC *act = z + 2 * widest, *heads = act + 2 * widest, *init = heads + 2 * widest;
    CFC_VEC *dt_v = init + 2 * widest, *keep_v = dt_v + 2, *mask_v = keep_v + 2, *biases = work + per_pair;
    const CFC_VEC *bias[2][n_blocks], *heads_bias[2][n_blocks];
    for (int64_t i = 0, at = 0; i < n_blocks; i++) {
        const CFC_NAME(block) *k = blocks + i;
        for (int p = 1; p <= 2; p++) {
            CFC_VEC *b = biases + at, *bh = b + p * k->width;
            for (int64_t o = 0; o < p * k->width; o++) b[o] = (CFC_VEC){0} + (k->b ? k->b[o / p] : 0);
            for (int64_t o = 0; o < p * k->heads; o++) bh[o] = (CFC_VEC){0} + (k->bh ? k->bh[o / p] : 0);
            bias[p - 1][i] = b, heads_bias[p - 1][i] = bh;
            at += p * (k->width + k->heads);
        }
    }
    for (int64_t b0 = 0; b0 < batch; b0 += 2 * CFC_LANES) {
        const int p = CFC_NAME(pairs)(batch, b0);
        const int64_t lw = p * CFC_LANES, n = batch - b0 < lw ? batch - b0 : lw;
        CFC_REAL *trace_g = trace ? trace + (b0 / CFC_LANES) * steps * F * CFC_LANES : NULL;
        CFC_REAL *ho = (CFC_REAL *)h_old;
        for (int64_t j = 0; j < H; j++)
            for (int64_t l = 0; l < lw; l++) ho[j * lw + l] = l < n ? h0[(b0 + l) * H + j] : 0;
        for (int64_t t = 0; t < steps; t++) {
            const CFC_REAL *dts = (const CFC_REAL *)dt_v, *ks = (const CFC_REAL *)keep_v;
            CFC_NAME(gather)(b0, n, lw, t, steps, 1, dt, 0, (CFC_REAL *)dt_v);
            if (keep) {
                CFC_NAME(gather)(b0, n, lw, t, steps, 1, keep, 1, (CFC_REAL *)keep_v);
                CFC_REAL *hs_old = (CFC_REAL *)h_old;
                for (int64_t j = 0; j < H; j++)
#pragma omp simd
                    for (int64_t l = 0; l < lw; l++) hs_old[j * lw + l] *= ks[l];
            }
            if (mask) CFC_NAME(gather)(b0, n, lw, t, steps, P0, mask, 0, (CFC_REAL *)mask_v);
            CFC_REAL *trace_t = trace_g ? trace_g + t * F * lw : NULL;
            for (int64_t i = 0; i < n_blocks; i++) {
                const CFC_NAME(block) *k = blocks + i;
                if (i > 0) memcpy(u, h_new + p * blocks[i - 1].offset, (size_t)(p * k->inputs) * sizeof(CFC_VEC));
                memcpy(u + p * k->inputs, h_old + p * k->offset, (size_t)(p * k->hidden) * sizeof(CFC_VEC));
                if (i == 0) CFC_NAME(gather)(b0, n, lw, t, steps, P0, pre0, 0, (CFC_REAL *)init);
                CFC_NAME(matvec)(k->width, k->concat, k->w, u, i == 0 ? init : bias[p - 1][i], z, p);
                CFC_VEC *hd = z;
                if (k->backbone) {
                    CFC_REAL *zs = (CFC_REAL *)z, *as = (CFC_REAL *)act;
                    const CFC_REAL *ms = (const CFC_REAL *)mask_v;
#pragma omp simd
                    for (int64_t e = 0; e < k->width * lw; e++) zs[e] = CFC_TANH(zs[e]);
                    if (trace_t) memcpy(trace_t + (k->trace_offset + k->heads) * lw, zs, k->width * lw * sizeof(CFC_REAL));
#pragma omp simd
                    for (int64_t e = 0; e < k->width * lw; e++) as[e] = mask ? zs[e] * ms[e] : zs[e];
                    CFC_NAME(matvec)(k->heads, k->width, k->wh, act, heads_bias[p - 1][i], heads, p);
                    hd = heads;
                }
                if (trace_t) memcpy(trace_t + k->trace_offset * lw, hd, k->heads * lw * sizeof(CFC_REAL));
                const CFC_REAL *hs = (const CFC_REAL *)hd;
                CFC_REAL *next = (CFC_REAL *)(h_new + p * k->offset);
                const int64_t Hk = k->hidden;
                for (int64_t j = 0; j < Hk; j++) {
                    if (k->mode == 2) {
                        const CFC_REAL a = k->a[j], wt = k->w_tau[j];
#pragma omp simd
                        for (int64_t l = 0; l < lw; l++) {
                            const CFC_REAL f = hs[j * lw + l];
                            const CFC_REAL e = CFC_EXP(-dts[l] * (wt + (f < 0 ? -f : f)));
                            next[j * lw + l] = a - a * e * f;
                        }
                    } else {
                        const int gated = k->mode == 0;
#pragma omp simd
                        for (int64_t l = 0; l < lw; l++) {
                            const CFC_REAL ff1 = CFC_TANH(hs[j * lw + l]), ff2 = CFC_TANH(hs[(Hk + j) * lw + l]);
                            const CFC_REAL s = hs[(2 * Hk + j) * lw + l] * dts[l] + hs[(3 * Hk + j) * lw + l];
                            const CFC_REAL g = 1 / (1 + CFC_EXP(-s));
                            next[j * lw + l] = gated ? ff1 + g * (ff2 - ff1) : ff1 + g * ff2;
                        }
                    }
                }
            }
            CFC_NAME(scatter)(b0, n, lw, t, steps, H, (const CFC_REAL *)h_new, out);
            CFC_VEC *swap = h_old;
            h_old = h_new;
            h_new = swap;
        }
    }
    free(base);
    return 0;
}

LNN_INLINE int CFC_NAME(backward)(int64_t batch, int64_t steps, int64_t n_blocks, const int64_t *dims,
                                  const CFC_REAL *const *weights, const CFC_REAL *dt, const CFC_REAL *keep,
                                  const CFC_REAL *mask, const CFC_REAL *trace, const CFC_REAL *grad_out,
                                  CFC_REAL *grad_h0, CFC_REAL *grads, CFC_REAL *act, CFC_REAL *grad_a,
                                  CFC_REAL *grad_w_tau) {
    CFC_NAME(block) blocks[n_blocks];
    int64_t F, widest;
    const int64_t H = CFC_NAME(blocks)(n_blocks, dims, weights, blocks, &F, &widest);
    const int64_t P0 = blocks[0].width;
    void *base;
    /* per group of a pair: g, g_prev, grad_out lanes, acc_a, acc_w_tau (H); d_heads, d_act, d_u (widest);
     * dt, keep (1); mask, act (P0); this step's grads (F) */
    CFC_VEC *work = lnn_alloc((size_t)(2 * (5 * H + 3 * widest + 2 + 2 * P0 + F)) * sizeof(CFC_VEC), 1, &base);
    if (work == NULL) return 1;
    CFC_VEC *g = work, *g_prev = g + 2 * H, *g_out = g_prev + 2 * H, *acc_a = g_out + 2 * H;
    CFC_VEC *acc_w_tau = acc_a + 2 * H, *d_heads = acc_w_tau + 2 * H, *d_act = d_heads + 2 * widest;
    CFC_VEC *d_u = d_act + 2 * widest, *dt_v = d_u + 2 * widest, *keep_v = dt_v + 2, *mask_v = keep_v + 2;
    CFC_VEC *act_v = mask_v + 2 * P0;
    CFC_REAL *dtrace_t = (CFC_REAL *)(act_v + 2 * P0);
    for (int64_t b0 = 0; b0 < batch; b0 += 2 * CFC_LANES) {
        const int p = CFC_NAME(pairs)(batch, b0);
        const int64_t lw = p * CFC_LANES, n = batch - b0 < lw ? batch - b0 : lw;
        const CFC_REAL *trace_g = trace + (b0 / CFC_LANES) * steps * F * CFC_LANES;
        for (int64_t j = 0; j < p * H; j++) g[j] = acc_a[j] = acc_w_tau[j] = (CFC_VEC){0};
        for (int64_t t = steps - 1; t >= 0; t--) {
            const CFC_REAL *dts = (const CFC_REAL *)dt_v, *ks = (const CFC_REAL *)keep_v;
            CFC_NAME(gather)(b0, n, lw, t, steps, 1, dt, 0, (CFC_REAL *)dt_v);
            CFC_NAME(gather)(b0, n, lw, t, steps, H, grad_out, 0, (CFC_REAL *)g_out);
            if (mask) CFC_NAME(gather)(b0, n, lw, t, steps, P0, mask, 0, (CFC_REAL *)mask_v);
            for (int64_t j = 0; j < p * H; j++) {
                g[j] += g_out[j];
                g_prev[j] = (CFC_VEC){0};
            }
            const CFC_REAL *trace_t = trace_g + t * F * lw;
            for (int64_t i = n_blocks - 1; i >= 0; i--) {
                const CFC_NAME(block) *k = blocks + i;
                const int64_t Hk = k->hidden;
                const CFC_REAL *hs = trace_t + k->trace_offset * lw;
                const CFC_REAL *gs = (const CFC_REAL *)(g + p * k->offset);
                CFC_REAL *dz = dtrace_t + k->trace_offset * lw;
                CFC_REAL *dh = k->backbone ? dz + k->width * lw : dz;
                for (int64_t j = 0; j < Hk; j++) {
                    if (k->mode == 2) {
                        const CFC_REAL a = k->a[j], wt = k->w_tau[j];
                        CFC_REAL *aa = (CFC_REAL *)(acc_a + p * (k->offset + j));
                        CFC_REAL *aw = (CFC_REAL *)(acc_w_tau + p * (k->offset + j));
#pragma omp simd
                        for (int64_t l = 0; l < lw; l++) {
                            const CFC_REAL f = hs[j * lw + l], af = f < 0 ? -f : f, G = gs[j * lw + l];
                            const CFC_REAL e = CFC_EXP(-dts[l] * (wt + af));
                            aa[l] += G * (1 - e * f);
                            aw[l] += a * G * f * e * dts[l];
                            dh[j * lw + l] = -a * G * e * (1 - dts[l] * af);
                        }
                    } else {
                        const int gated = k->mode == 0;
#pragma omp simd
                        for (int64_t l = 0; l < lw; l++) {
                            const CFC_REAL ff1 = CFC_TANH(hs[j * lw + l]), ff2 = CFC_TANH(hs[(Hk + j) * lw + l]);
                            const CFC_REAL ta = hs[(2 * Hk + j) * lw + l], G = gs[j * lw + l];
                            const CFC_REAL gt = 1 / (1 + CFC_EXP(-(ta * dts[l] + hs[(3 * Hk + j) * lw + l])));
                            const CFC_REAL d_ff1 = gated ? G * (1 - gt) : G, d_ff2 = G * gt;
                            const CFC_REAL d_s = G * (gated ? ff2 - ff1 : ff2) * gt * (1 - gt);
                            dh[j * lw + l] = d_ff1 * (1 - ff1 * ff1);
                            dh[(Hk + j) * lw + l] = d_ff2 * (1 - ff2 * ff2);
                            dh[(2 * Hk + j) * lw + l] = d_s * dts[l];
                            dh[(3 * Hk + j) * lw + l] = d_s;
                        }
                    }
                }
                if (k->backbone) {
                    memcpy(d_heads, dh, k->heads * lw * sizeof(CFC_REAL));
                    CFC_NAME(matvec)(k->width, k->heads, k->wh_t, d_heads, NULL, d_act, p);
                    const CFC_REAL *tz = trace_t + (k->trace_offset + k->heads) * lw, *da = (const CFC_REAL *)d_act;
                    const CFC_REAL *ms = (const CFC_REAL *)mask_v;
#pragma omp simd
                    for (int64_t e = 0; e < k->width * lw; e++)
                        dz[e] = (mask ? da[e] * ms[e] : da[e]) * (1 - tz[e] * tz[e]);
                    if (act != NULL) {
                        CFC_REAL *as = (CFC_REAL *)act_v;
#pragma omp simd
                        for (int64_t e = 0; e < k->width * lw; e++) as[e] = mask ? tz[e] * ms[e] : tz[e];
                        CFC_NAME(scatter)(b0, n, lw, t, steps, k->width, as, act);
                    }
                }
                memcpy(d_act, dz, k->width * lw * sizeof(CFC_REAL));
                CFC_NAME(matvec)(k->concat, k->width, k->w_t, d_act, NULL, d_u, p);
                if (i > 0) {
                    CFC_VEC *g_in = g + p * blocks[i - 1].offset;
                    for (int64_t c = 0; c < p * k->inputs; c++) g_in[c] += d_u[c];
                }
                for (int64_t c = 0; c < p * Hk; c++) g_prev[p * k->offset + c] += d_u[p * k->inputs + c];
            }
            CFC_NAME(scatter)(b0, n, lw, t, steps, F, dtrace_t, grads);
            if (keep) {
                CFC_NAME(gather)(b0, n, lw, t, steps, 1, keep, 1, (CFC_REAL *)keep_v);
                CFC_REAL *gp = (CFC_REAL *)g_prev;
                for (int64_t j = 0; j < H; j++)
#pragma omp simd
                    for (int64_t l = 0; l < lw; l++) gp[j * lw + l] *= ks[l];
            }
            CFC_VEC *swap = g;
            g = g_prev;
            g_prev = swap;
        }
        CFC_NAME(scatter)(b0, n, lw, 0, 1, H, (const CFC_REAL *)g, grad_h0);
        const CFC_REAL *sa = (const CFC_REAL *)acc_a, *sw = (const CFC_REAL *)acc_w_tau;
        for (int64_t i = 0; i < n_blocks; i++) {
            const CFC_NAME(block) *k = blocks + i;
            if (k->mode != 2) continue;
            for (int64_t j = k->offset; j < k->offset + k->hidden; j++)
                for (int64_t l = 0; l < lw; l++) {
                    grad_a[j] += sa[j * lw + l];
                    grad_w_tau[j] += sw[j * lw + l];
                }
        }
    }
    free(base);
    return 0;
}

/* ------------------------------------------------------------------------------------------ entry points */

LNN_DISPATCH_WIDE
int CFC_NAME(cfc_forward)(int64_t batch, int64_t steps, int64_t n_blocks, const int64_t *dims,
                          const CFC_REAL *const *weights, const CFC_REAL *pre0, const CFC_REAL *dt,
                          const CFC_REAL *keep, const CFC_REAL *mask, const CFC_REAL *h0, CFC_REAL *out,
                          CFC_REAL *trace) {
    const lnn_fp_mode mode = lnn_fp_enter();
    const int status = CFC_NAME(forward)(batch, steps, n_blocks, dims, weights, pre0, dt, keep, mask, h0, out, trace);
    lnn_fp_leave(mode);
    return status;
}

LNN_DISPATCH_WIDE
int CFC_NAME(cfc_backward)(int64_t batch, int64_t steps, int64_t n_blocks, const int64_t *dims,
                           const CFC_REAL *const *weights, const CFC_REAL *dt, const CFC_REAL *keep,
                           const CFC_REAL *mask, const CFC_REAL *trace, const CFC_REAL *grad_out,
                           CFC_REAL *grad_h0, CFC_REAL *grads, CFC_REAL *act, CFC_REAL *grad_a,
                           CFC_REAL *grad_w_tau) {
    const lnn_fp_mode mode = lnn_fp_enter();
    const int status = CFC_NAME(backward)(batch, steps, n_blocks, dims, weights, dt, keep, mask, trace, grad_out,
                                          grad_h0, grads, act, grad_a, grad_w_tau);
    lnn_fp_leave(mode);
    return status;
}

#undef CFC_VEC
