/*
 * nas_kernels.c - C99 reference kernels, bit-exact with quant's Rust interpreter.
 * See nas_kernels.h for the integer conventions. Each function names the Rust function it
 * mirrors; keep the two in step.
 */
#include "nas_kernels.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define NAS_USE_DSP 1
#else
#define NAS_USE_DSP 0
#endif

/* sum_i a[i] b[i] + acc over n int8 pairs. */
static int32_t nas_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t acc) {
    int32_t i = 0;
#if NAS_USE_DSP
    /* 4 bytes per step: SXTB16 splits a word into its even and odd bytes as two int16
     * lanes, SMLAD multiplies lane-wise and adds both products to the accumulator. The
     * order of additions differs from the portable loop, but int32 addition of values whose
     * every partial sum is within the validated bound is exact, so the result is the same. */
    for (; i + 4 <= n; i += 4) {
        uint32_t wa, wb;
        memcpy(&wa, a + i, 4); /* unaligned word loads are legal on M4/M7 */
        memcpy(&wb, b + i, 4);
        int16x2_t a02 = __sxtb16((int8x4_t)wa);
        int16x2_t b02 = __sxtb16((int8x4_t)wb);
        /* GCC 12's arm_acle.h lacks __ror: rotate by hand (one ROR instruction). */
        int16x2_t a13 = __sxtb16((int8x4_t)((wa >> 8) | (wa << 24)));
        int16x2_t b13 = __sxtb16((int8x4_t)((wb >> 8) | (wb << 24)));
        acc = __smlad(a02, b02, acc);
        acc = __smlad(a13, b13, acc);
    }
#endif
    for (; i < n; i++) {
        acc += (int32_t)a[i] * (int32_t)b[i];
    }
    return acc;
}

static nas_dyadic nas_rq_get(const nas_requant *rq, int32_t c) {
    return rq->per_channel ? rq->mult[c] : rq->mult[0];
}

/* quant::isqrt_u32 */
uint32_t nas_isqrt_u32(uint32_t n) {
    uint32_t bits = 0, t = n, x;
    if (n == 0) {
        return 0;
    }
    while (t) {
        bits++;
        t >>= 1;
    }
    x = (uint32_t)1 << ((bits + 1) / 2);
    for (;;) {
        uint32_t y = (x + n / x) >> 1;
        if (y >= x) {
            return x;
        }
        x = y;
    }
}

/* quant::IExp::eval */
int32_t nas_iexp_eval(const nas_iexp *e, int32_t q) {
    int32_t z, p, t, l;
    if (q > 0) {
        q = 0;
    }
    if (q < -INT32_MAX) {
        q = -INT32_MAX;
    }
    z = (-q) / e->q_ln2;
    p = q + z * e->q_ln2;
    t = p + e->q_b;
    l = t * t + e->q_c;
    return z >= 31 ? 0 : nas_asr32(l, z);
}

/* quant::kernels::linear */
void nas_linear_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                   const nas_requant *rq, const nas_linear_dims *d, int8_t *y) {
    int32_t r, o;
    for (r = 0; r < d->rows; r++) {
        const int8_t *xr = x + (size_t)r * (size_t)d->in_f;
        int8_t *yr = y + (size_t)r * (size_t)d->out_f;
        for (o = 0; o < d->out_f; o++) {
            int32_t acc = nas_dot_s8(xr, w + (size_t)o * (size_t)d->in_f, d->in_f, bias[o]);
            yr[o] = nas_requantize(acc, nas_rq_get(rq, o));
        }
    }
}

/* quant::kernels::matmul */
void nas_matmul_s8(const int8_t *a, const int8_t *b, const nas_matmul_dims *d,
                   nas_dyadic rq, int8_t *y) {
    int32_t bi, i, j, kk;
    const size_t mk = (size_t)d->m * (size_t)d->k, kn = (size_t)d->k * (size_t)d->n;
    const size_t mn = (size_t)d->m * (size_t)d->n;
    for (bi = 0; bi < d->batch; bi++) {
        const int8_t *ab = a + bi * mk;
        const int8_t *bb = b + bi * kn;
        int8_t *ob = y + bi * mn;
        for (i = 0; i < d->m; i++) {
            const int8_t *ar = ab + (size_t)i * (size_t)d->k;
            for (j = 0; j < d->n; j++) {
                int32_t acc = 0;
                if (d->transpose_b) {
                    acc = nas_dot_s8(ar, bb + (size_t)j * (size_t)d->k, d->k, 0);
                } else {
                    /* strided column of b: portable loop (packing would need scratch) */
                    for (kk = 0; kk < d->k; kk++) {
                        acc += (int32_t)ar[kk] * (int32_t)bb[(size_t)kk * (size_t)d->n + j];
                    }
                }
                ob[(size_t)i * (size_t)d->n + j] = nas_requantize(acc, rq);
            }
        }
    }
}

/* quant::AddParams::eval */
void nas_add_s8(const int8_t *a, const int8_t *b, int32_t n, const nas_add_params *p,
                int8_t *y) {
    int32_t i;
    for (i = 0; i < n; i++) {
        int32_t acc = (int32_t)a[i] * p->ma + (int32_t)b[i] * p->mb;
        int32_t r = p->s == 0 ? acc : nas_asr32(acc + ((int32_t)1 << (p->s - 1)), p->s);
        y[i] = nas_sat8(r);
    }
}

void nas_relu_s8(const int8_t *x, int32_t n, int8_t *y) {
    int32_t i;
    for (i = 0; i < n; i++) {
        y[i] = x[i] > 0 ? x[i] : 0;
    }
}

void nas_lut_s8(const int8_t *x, int32_t n, const int8_t *table, int8_t *y) {
    int32_t i;
    for (i = 0; i < n; i++) {
        y[i] = table[(int32_t)x[i] + 128];
    }
}

void nas_requant_s8(const int8_t *x, int32_t n, nas_dyadic d, int8_t *y) {
    int32_t i;
    for (i = 0; i < n; i++) {
        y[i] = nas_requantize((int32_t)x[i], d);
    }
}

/* d_i = x_i - max, shifted into the internal scale (quant::ISoftmax::eval_row). */
static int32_t nas_softmax_exp(const nas_softmax_params *p, int32_t xi, int32_t m) {
    int32_t d = xi - m;
    d = p->j >= 0 ? d * ((int32_t)1 << p->j) : nas_asr32(d, -p->j);
    return nas_iexp_eval(&p->exp, d);
}

/* quant::ISoftmax::eval_row, row by row. */
void nas_softmax_s8(const int8_t *x, int32_t rows, const nas_softmax_params *p, int8_t *y) {
    int32_t r, i, n = p->len;
    for (r = 0; r < rows; r++) {
        const int8_t *xr = x + (size_t)r * (size_t)n;
        int8_t *yr = y + (size_t)r * (size_t)n;
        int32_t m = xr[0], sum = 0, half;
        for (i = 1; i < n; i++) {
            m = xr[i] > m ? xr[i] : m;
        }
        for (i = 0; i < n; i++) {
            sum += nas_softmax_exp(p, xr[i], m);
        }
        half = sum / 2;
        for (i = 0; i < n; i++) {
            /* recompute e_i instead of storing an int32 row (identical value) */
            int32_t v = (nas_softmax_exp(p, xr[i], m) * 128 + half) / sum;
            yr[i] = (int8_t)(v > 127 ? 127 : v);
        }
    }
}

/* quant::ibert::normalize_row, first half: mean (4 fractional bits) and std. */
static void nas_norm_stats(const int8_t *x, const nas_layernorm_params *p, int32_t *mu,
                           int32_t *std) {
    int32_t i, sum = 0, s;
    uint32_t v = 0, var, t;
    for (i = 0; i < p->len; i++) {
        sum += x[i];
    }
    *mu = nas_div_round(sum * 16, p->len);
    for (i = 0; i < p->len; i++) {
        int32_t c = (int32_t)x[i] * 16 - *mu;
        v += ((uint32_t)(c * c)) >> p->r;
    }
    var = v / (uint32_t)p->len;
    t = var + p->eps_q;
    if (t < var) {
        t = UINT32_MAX; /* saturating add, as Rust's saturating_add */
    }
    s = (int32_t)nas_isqrt_u32(t);
    *std = s < 1 ? 1 : s;
}

/* normalize_row, second half: element i of the normalised row (x_norm * 2^G). */
static int32_t nas_norm_value(const int8_t *x, int32_t i, const nas_layernorm_params *p,
                              int32_t mu, int32_t std) {
    int32_t c = (int32_t)x[i] * 16 - mu;
    return nas_div_round(c * ((int32_t)1 << (p->g - p->r / 2)), std);
}

/* quant::IntLayerNorm::eval_row_ibert */
void nas_layernorm_s8(const int8_t *x, int32_t rows, const nas_layernorm_params *p, int8_t *y) {
    int32_t r, i, mu, std, lim = (int32_t)1 << (p->g + 8);
    for (r = 0; r < rows; r++) {
        const int8_t *xr = x + (size_t)r * (size_t)p->len;
        int8_t *yr = y + (size_t)r * (size_t)p->len;
        nas_norm_stats(xr, p, &mu, &std);
        for (i = 0; i < p->len; i++) {
            int32_t n = nas_norm_value(xr, i, p, mu, std);
            n = n < -lim ? -lim : (n > lim ? lim : n);
            yr[i] = nas_requantize(n * p->gamma[i] + p->beta[i], p->requant);
        }
    }
}

static int32_t nas_sat16(int32_t v) {
    return v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
}

/* quant::IntLayerNorm::eval_row_scaled */
void nas_scaled_layernorm_s8(const int8_t *x, int32_t rows, const nas_layernorm_params *p,
                             int8_t *y) {
    int32_t r, i, mu, std;
    for (r = 0; r < rows; r++) {
        const int8_t *xr = x + (size_t)r * (size_t)p->len;
        int8_t *yr = y + (size_t)r * (size_t)p->len;
        nas_norm_stats(xr, p, &mu, &std);
        for (i = 0; i < p->len; i++) {
            int32_t n = nas_sat16(nas_norm_value(xr, i, p, mu, std));
            int32_t v = nas_sat16(n * p->gamma[i] + p->beta[i]);
            yr[i] = nas_requantize(v, p->requant);
        }
    }
}

void nas_concat_class_token_s8(const int8_t *x, int32_t t, int32_t d, const int8_t *token,
                               int8_t *y) {
    memcpy(y, token, (size_t)d);
    memcpy(y + d, x, (size_t)t * (size_t)d);
}

void nas_copy_s8(const int8_t *x, int32_t n, int8_t *y) {
    memmove(y, x, (size_t)n);
}

/* quant::kernels::transpose */
void nas_transpose_s8(const int8_t *x, const int32_t *shape, const int32_t *perm,
                      int32_t rank, int8_t *y) {
    int32_t in_strides[NAS_MAX_RANK], ostr[NAS_MAX_RANK], oshape[NAS_MAX_RANK];
    int32_t idx[NAS_MAX_RANK];
    int32_t i, ax, total = 1;
    if (rank < 1 || rank > NAS_MAX_RANK) {
        return;
    }
    in_strides[rank - 1] = 1;
    for (i = rank - 2; i >= 0; i--) {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    for (i = 0; i < rank; i++) {
        oshape[i] = shape[perm[i]];
        ostr[i] = in_strides[perm[i]];
        idx[i] = 0;
        total *= shape[i];
    }
    for (i = 0; i < total; i++) {
        int32_t off = 0;
        for (ax = 0; ax < rank; ax++) {
            off += idx[ax] * ostr[ax];
        }
        y[i] = x[off];
        for (ax = rank - 1; ax >= 0; ax--) {
            if (++idx[ax] < oshape[ax]) {
                break;
            }
            idx[ax] = 0;
        }
    }
}

/* quant::kernels::mean_rows, column by column (no int32 scratch row needed). */
void nas_mean_rows_s8(const int8_t *x, int32_t n, int32_t c, int8_t *y) {
    int32_t r, ch;
    for (ch = 0; ch < c; ch++) {
        int32_t sum = 0;
        for (r = 0; r < n; r++) {
            sum += x[(size_t)r * (size_t)c + ch];
        }
        y[ch] = (int8_t)nas_div_round(sum, n);
    }
}

/* quant::kernels::conv2d */
void nas_conv2d_s8(const int8_t *x, const nas_hwc *in, const int8_t *w, const int32_t *bias,
                   const nas_requant *rq, const nas_window *win, const nas_hwc *out,
                   int8_t *y) {
    int32_t oy, ox, o, ky, kx;
    const int32_t kh = win->k[0], kw = win->k[1], ic = in->c;
    for (oy = 0; oy < out->h; oy++) {
        for (ox = 0; ox < out->w; ox++) {
            int8_t *yp = y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)out->c;
            for (o = 0; o < out->c; o++) {
                int32_t acc = bias[o];
                for (ky = 0; ky < kh; ky++) {
                    int32_t iy = oy * win->stride[0] + ky - win->pad[0];
                    if (iy < 0 || iy >= in->h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; kx++) {
                        int32_t ix = ox * win->stride[1] + kx - win->pad[1];
                        if (ix < 0 || ix >= in->w) {
                            continue;
                        }
                        acc = nas_dot_s8(x + ((size_t)iy * (size_t)in->w + (size_t)ix) * (size_t)ic,
                                         w + (((size_t)o * kh + ky) * kw + kx) * (size_t)ic, ic,
                                         acc);
                    }
                }
                yp[o] = nas_requantize(acc, nas_rq_get(rq, o));
            }
        }
    }
}

/* quant::kernels::depthwise_conv2d */
void nas_depthwise_conv2d_s8(const int8_t *x, const nas_hwc *in, const int8_t *w,
                             const int32_t *bias, const nas_requant *rq,
                             const nas_window *win, const nas_hwc *out, int8_t *y) {
    int32_t oy, ox, ch, ky, kx;
    const int32_t c = in->c, kw = win->k[1];
    for (oy = 0; oy < out->h; oy++) {
        for (ox = 0; ox < out->w; ox++) {
            int8_t *yp = y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)c;
            for (ch = 0; ch < c; ch++) {
                int32_t acc = bias[ch];
                for (ky = 0; ky < win->k[0]; ky++) {
                    int32_t iy = oy * win->stride[0] + ky - win->pad[0];
                    if (iy < 0 || iy >= in->h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; kx++) {
                        int32_t ix = ox * win->stride[1] + kx - win->pad[1];
                        if (ix < 0 || ix >= in->w) {
                            continue;
                        }
                        acc += (int32_t)x[((size_t)iy * (size_t)in->w + (size_t)ix) * (size_t)c + ch] *
                               (int32_t)w[((size_t)ky * kw + kx) * (size_t)c + ch];
                    }
                }
                yp[ch] = nas_requantize(acc, nas_rq_get(rq, ch));
            }
        }
    }
}

/* quant::kernels::pool2d */
void nas_pool2d_s8(const int8_t *x, const nas_hwc *in, const nas_window *win,
                   const nas_hwc *out, int32_t avg, int8_t *y) {
    int32_t oy, ox, ch, ky, kx;
    const int32_t c = in->c;
    for (oy = 0; oy < out->h; oy++) {
        for (ox = 0; ox < out->w; ox++) {
            int8_t *yp = y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)c;
            for (ch = 0; ch < c; ch++) {
                int32_t sum = 0, count = 0, mx = -128;
                for (ky = 0; ky < win->k[0]; ky++) {
                    int32_t iy = oy * win->stride[0] + ky - win->pad[0];
                    if (iy < 0 || iy >= in->h) {
                        continue;
                    }
                    for (kx = 0; kx < win->k[1]; kx++) {
                        int32_t ix = ox * win->stride[1] + kx - win->pad[1];
                        int32_t v;
                        if (ix < 0 || ix >= in->w) {
                            continue;
                        }
                        v = x[((size_t)iy * (size_t)in->w + (size_t)ix) * (size_t)c + ch];
                        sum += v;
                        mx = v > mx ? v : mx;
                        count++;
                    }
                }
                /* pad < k guarantees count >= 1; max(1) as in Rust anyway */
                yp[ch] = (int8_t)(avg ? nas_div_round(sum, count < 1 ? 1 : count) : mx);
            }
        }
    }
}

/* sum_i a[i*sa] b[i*sb] over n pairs; contiguous operands take the SIMD dot product. */
static int32_t nas_dot_strided_s8(const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                                  int32_t n) {
    int32_t i, acc = 0;
    if (sa == 1 && sb == 1) {
        return nas_dot_s8(a, b, n, 0);
    }
    for (i = 0; i < n; i++) {
        acc += (int32_t)a[(size_t)i * (size_t)sa] * (int32_t)b[(size_t)i * (size_t)sb];
    }
    return acc;
}

void nas_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v,
                      const nas_attention_params *p, int8_t *scratch, int8_t *out) {
    int32_t s, h, t, j;
    for (s = 0; s < p->rows; s++) {
        for (h = 0; h < p->heads; h++) {
            const int8_t *qr = q + (size_t)h * (size_t)p->q.head + (size_t)s * (size_t)p->q.row;
            const int8_t *kh = k + (size_t)h * (size_t)p->k.head;
            const int8_t *vh = v + (size_t)h * (size_t)p->v.head;
            int8_t *o = out + (size_t)h * (size_t)p->out.head + (size_t)s * (size_t)p->out.row;
            /* one row of scores */
            for (t = 0; t < p->keys; t++) {
                int32_t acc = nas_dot_strided_s8(qr, p->q.inner, kh + (size_t)t * (size_t)p->k.row,
                                                 p->k.inner, p->inner);
                scratch[t] = nas_requantize(acc, p->score_rq);
            }
            /* its softmax, in place (each element is read before it is overwritten) */
            nas_softmax_s8(scratch, 1, &p->softmax, scratch);
            /* the output row: A[s, :] . V */
            for (j = 0; j < p->v_inner; j++) {
                int32_t acc = nas_dot_strided_s8(scratch, 1, vh + (size_t)j * (size_t)p->v.inner,
                                                 p->v.row, p->keys);
                o[(size_t)j * (size_t)p->out.inner] = nas_requantize(acc, p->out_rq);
            }
        }
    }
}

void nas_fwsa_s8(const int8_t *m2, const int8_t *x, const int8_t *v,
                 const nas_attention_params *p, int8_t *scratch, int8_t *out) {
    nas_attention_s8(m2, x, v, p, scratch, out);
}
