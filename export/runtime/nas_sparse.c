/* nas_sparse.c - see nas_sparse.h for the weight stream these kernels read.
 *
 * Speed: decoding an entry (its skip byte, block index, width) costs several instructions, so
 * the Linear kernel decodes each entry once for four input rows, and full blocks of 4 use the
 * DSP dot product on Cortex-M (one word load of the 4 weights, SXTB16 + SMLAD). As in the dense
 * kernels, int32 partial sums in any order are exact (quant's validate() bounds them all). */
#include "nas_sparse.h"

#include "nas_dsp.h"

/* A coded matrix: header fields and the start of the row table and of the entries. */
typedef struct {
    int32_t block;
    int32_t cols;
    const uint8_t *counts;
    const uint8_t *entries;
} nas_rle_view;

static nas_rle_view nas_rle_open(const uint8_t *s) {
    nas_rle_view v;
    uint32_t rows = (uint32_t)s[8] | (uint32_t)s[9] << 8 | (uint32_t)s[10] << 16 |
                    (uint32_t)s[11] << 24;
    v.block = (int32_t)s[5];
    v.cols = (int32_t)((uint32_t)s[12] | (uint32_t)s[13] << 8 | (uint32_t)s[14] << 16 |
                       (uint32_t)s[15] << 24);
    v.counts = s + NAS_RLE_HEADER_BYTES;
    v.entries = v.counts + 2 * (size_t)rows;
    return v;
}

static inline int32_t nas_rle_count(const nas_rle_view *v, int32_t row) {
    return (int32_t)v->counts[2 * row] | (int32_t)v->counts[2 * row + 1] << 8;
}

/* A stored byte as the int8 it encodes (well defined, unlike a cast of values above 127). */
static inline int32_t nas_rle_val(uint8_t b) {
    return (int32_t)(b ^ 0x80u) - 128;
}

static inline nas_dyadic nas_rle_rq(const nas_requant *rq, int32_t ch) {
    return rq->per_channel ? rq->mult[ch] : rq->mult[0];
}

/* Dot product of one coded row with the dense vector x; *p walks past the row's entries. */
static int32_t nas_rle_row_dot(const nas_rle_view *v, int32_t count, const uint8_t **p,
                               const int8_t *x, int32_t acc) {
    const uint8_t *q = *p;
    int32_t e, k, cursor = 0;
    for (e = 0; e < count; e++) {
        int32_t c0, w;
        cursor += *q++;
        c0 = cursor * v->block;
        w = v->cols - c0 < v->block ? v->cols - c0 : v->block;
#if NAS_USE_DSP
        if (w == 4) {
            const uint32_t xv = nas_load32(x + c0);
            acc = nas_mac4(__sxtb16((int8x4_t)xv), nas_sxtb16_odd(xv), nas_load32(q), acc);
            q += 4;
            cursor++;
            continue;
        }
#endif
        for (k = 0; k < w; k++) {
            acc += (int32_t)x[c0 + k] * nas_rle_val(q[k]);
        }
        q += w;
        cursor++;
    }
    *p = q;
    return acc;
}

/* acc[t] += coded row . x_t for the 4 input rows x_t = x + t*xs; returns the end of the row's
 * entries. Each entry is decoded once for the four rows. */
static const uint8_t *nas_rle_row_dot4(const nas_rle_view *v, int32_t count, const uint8_t *q,
                                       const int8_t *x, size_t xs, int32_t *acc) {
    const int8_t *x1 = x + xs, *x2 = x + 2 * xs, *x3 = x + 3 * xs;
    int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    int32_t e, k, cursor = 0;
    for (e = 0; e < count; e++) {
        int32_t c0, w;
        cursor += *q++;
        c0 = cursor * v->block;
        w = v->cols - c0 < v->block ? v->cols - c0 : v->block;
#if NAS_USE_DSP
        if (w == 4) {
            const uint32_t wv = nas_load32(q);
            const int32_t w02 = __sxtb16((int8x4_t)wv), w13 = nas_sxtb16_odd(wv);
            uint32_t xv = nas_load32(x + c0);
            s0 = __smlad(__sxtb16((int8x4_t)xv), w02, __smlad(nas_sxtb16_odd(xv), w13, s0));
            xv = nas_load32(x1 + c0);
            s1 = __smlad(__sxtb16((int8x4_t)xv), w02, __smlad(nas_sxtb16_odd(xv), w13, s1));
            xv = nas_load32(x2 + c0);
            s2 = __smlad(__sxtb16((int8x4_t)xv), w02, __smlad(nas_sxtb16_odd(xv), w13, s2));
            xv = nas_load32(x3 + c0);
            s3 = __smlad(__sxtb16((int8x4_t)xv), w02, __smlad(nas_sxtb16_odd(xv), w13, s3));
            q += 4;
            cursor++;
            continue;
        }
#endif
        for (k = 0; k < w; k++) {
            const int32_t wk = nas_rle_val(q[k]);
            s0 += (int32_t)x[c0 + k] * wk;
            s1 += (int32_t)x1[c0 + k] * wk;
            s2 += (int32_t)x2[c0 + k] * wk;
            s3 += (int32_t)x3[c0 + k] * wk;
        }
        q += w;
        cursor++;
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
    return q;
}

void nas_linear_rle_s8(const int8_t *x, const uint8_t *w, const int32_t *bias,
                       const nas_requant *rq, const nas_linear_dims *d, int8_t *y) {
    const nas_rle_view v = nas_rle_open(w);
    const size_t in_f = (size_t)d->in_f, out_f = (size_t)d->out_f;
    const uint8_t *row = v.entries;
    int32_t o, r, t;
    /* Output-channel outer: each coded row is found once and reused for every input row. */
    for (o = 0; o < d->out_f; o++) {
        const int32_t count = nas_rle_count(&v, o);
        const nas_dyadic dq = nas_rle_rq(rq, o);
        const uint8_t *next = row;
        for (r = 0; r + 4 <= d->rows; r += 4) {
            int32_t acc[4];
            acc[0] = acc[1] = acc[2] = acc[3] = bias[o];
            next = nas_rle_row_dot4(&v, count, row, x + (size_t)r * in_f, in_f, acc);
            for (t = 0; t < 4; t++) {
                y[(size_t)(r + t) * out_f + (size_t)o] = nas_requantize(acc[t], dq);
            }
        }
        for (; r < d->rows; r++) {
            const uint8_t *p = row;
            int32_t acc = nas_rle_row_dot(&v, count, &p, x + (size_t)r * in_f, bias[o]);
            y[(size_t)r * out_f + (size_t)o] = nas_requantize(acc, dq);
            next = p;
        }
        row = next;
    }
}

/* One output pixel of a coded convolution: `cin` input channels per kernel position (1 for
 * depthwise, where `ch_off` selects the channel), kernel positions row-major over kh x kw.
 * Out-of-range input positions contribute 0, as in the dense kernels. */
static int32_t nas_rle_conv_pixel(const nas_rle_view *v, int32_t count, const uint8_t **p,
                                  const int8_t *x, const nas_hwc *in, int32_t cin,
                                  int32_t ch_off, int32_t kw, int32_t iy0, int32_t ix0,
                                  int32_t acc) {
    const uint8_t *q = *p;
    int32_t e, k, cursor = 0;
    for (e = 0; e < count; e++) {
        int32_t c0, w, i, t, kx, ky;
        cursor += *q++;
        c0 = cursor * v->block;
        w = v->cols - c0 < v->block ? v->cols - c0 : v->block;
        if (cin == 1 && v->block == kw) {
            /* depthwise with one kernel row per block: the block index is the row */
            const int32_t iy = iy0 + cursor;
            if (iy >= 0 && iy < in->h) {
                const int8_t *xr = x + (size_t)iy * (size_t)in->w * (size_t)in->c + (size_t)ch_off;
                for (k = 0; k < w; k++) {
                    const int32_t ix = ix0 + k;
                    if (ix >= 0 && ix < in->w) {
                        acc += (int32_t)xr[(size_t)ix * (size_t)in->c] * nas_rle_val(q[k]);
                    }
                }
            }
            q += w;
            cursor++;
            continue;
        }
        i = c0 % cin;
        t = c0 / cin;
        kx = t % kw;
        ky = t / kw;
        if (i + w <= cin) {
            /* the block is w consecutive input channels at one kernel position */
            const int32_t iy = iy0 + ky, ix = ix0 + kx;
            if (iy >= 0 && iy < in->h && ix >= 0 && ix < in->w) {
                const int8_t *xp = x + ((size_t)iy * (size_t)in->w + (size_t)ix) * (size_t)in->c +
                                   (size_t)(ch_off + i);
#if NAS_USE_DSP
                if (w == 4) {
                    const uint32_t xv = nas_load32(xp);
                    acc = nas_mac4(__sxtb16((int8x4_t)xv), nas_sxtb16_odd(xv), nas_load32(q),
                                   acc);
                } else
#endif
                {
                    for (k = 0; k < w; k++) {
                        acc += (int32_t)xp[k] * nas_rle_val(q[k]);
                    }
                }
            }
            q += w;
            cursor++;
            continue;
        }
        for (k = 0; k < w; k++) {
            const int32_t iy = iy0 + ky, ix = ix0 + kx;
            if (iy >= 0 && iy < in->h && ix >= 0 && ix < in->w) {
                acc += (int32_t)x[((size_t)iy * (size_t)in->w + (size_t)ix) * (size_t)in->c +
                                  (size_t)(ch_off + i)] *
                       nas_rle_val(q[k]);
            }
            if (++i == cin) {
                i = 0;
                if (++kx == kw) {
                    kx = 0;
                    ky++;
                }
            }
        }
        q += w;
        cursor++;
    }
    *p = q;
    return acc;
}

/* Both coded convolutions: a regular one reads all in->c channels at every kernel position
 * (row o = output channel o); a depthwise one reads channel o alone. */
static void nas_conv2d_rle_any(const int8_t *x, const nas_hwc *in, const uint8_t *w,
                               const int32_t *bias, const nas_requant *rq,
                               const nas_window *win, const nas_hwc *out, int32_t depthwise,
                               int8_t *y) {
    const nas_rle_view v = nas_rle_open(w);
    const int32_t cin = depthwise ? 1 : in->c;
    int32_t oy, ox, o;
    for (oy = 0; oy < out->h; oy++) {
        for (ox = 0; ox < out->w; ox++) {
            const int32_t iy0 = oy * win->stride[0] - win->pad[0];
            const int32_t ix0 = ox * win->stride[1] - win->pad[1];
            int8_t *yp = y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)out->c;
            const uint8_t *p = v.entries;
            for (o = 0; o < out->c; o++) {
                int32_t acc = nas_rle_conv_pixel(&v, nas_rle_count(&v, o), &p, x, in, cin,
                                                 depthwise ? o : 0, win->k[1], iy0, ix0,
                                                 bias[o]);
                yp[o] = nas_requantize(acc, nas_rle_rq(rq, o));
            }
        }
    }
}

void nas_conv2d_rle_s8(const int8_t *x, const nas_hwc *in, const uint8_t *w,
                       const int32_t *bias, const nas_requant *rq, const nas_window *win,
                       const nas_hwc *out, int8_t *y) {
    nas_conv2d_rle_any(x, in, w, bias, rq, win, out, 0, y);
}

void nas_depthwise_conv2d_rle_s8(const int8_t *x, const nas_hwc *in, const uint8_t *w,
                                 const int32_t *bias, const nas_requant *rq,
                                 const nas_window *win, const nas_hwc *out, int8_t *y) {
    nas_conv2d_rle_any(x, in, w, bias, rq, win, out, 1, y);
}
