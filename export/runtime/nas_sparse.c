/* nas_sparse.c - see nas_sparse.h for the weight stream these kernels read.
 *
 * Speed: decoding an entry (its skip byte, block index, width) costs several instructions, so
 * each entry is decoded once for several outputs: the Linear kernel for four input rows, the
 * convolution for four consecutive pixels of an output row (one weight load per block, full
 * blocks of 4 with the DSP dot product on Cortex-M: one word load of the 4 weights, SXTB16 +
 * SMLAD), and the depthwise convolution decodes a channel's entries (kept kernel rows) once
 * for the whole channel. As in the dense kernels, int32 partial sums in any order are exact
 * (quant's validate() bounds them all). */
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
        /* prepared once per output channel, not the general form (its shift test and
         * rounding constant) per output */
        const nas_rq_prep dq = nas_rq_prepare(nas_rle_rq(rq, o));
        const uint8_t *next = row;
        for (r = 0; r + 4 <= d->rows; r += 4) {
            int32_t acc[4];
            acc[0] = acc[1] = acc[2] = acc[3] = bias[o];
            next = nas_rle_row_dot4(&v, count, row, x + (size_t)r * in_f, in_f, acc);
            for (t = 0; t < 4; t++) {
                y[(size_t)(r + t) * out_f + (size_t)o] = nas_rq_apply(acc[t], &dq);
            }
        }
        for (; r < d->rows; r++) {
            const uint8_t *p = row;
            int32_t acc = nas_rle_row_dot(&v, count, &p, x + (size_t)r * in_f, bias[o]);
            y[(size_t)r * out_f + (size_t)o] = nas_rq_apply(acc, &dq);
            next = p;
        }
        row = next;
    }
}

/* A coded weight byte as the int8 it encodes: read through an int8_t lvalue (a character
 * type, so the aliasing is allowed; int8_t is two's complement), one sign-extending load. */
static inline int32_t nas_rle_w(const uint8_t *q) {
    return *(const int8_t *)q;
}

/* acc + one block of w coded weights q against x[0 .. w) (the DSP dot product for w = 4). */
static inline int32_t nas_rle_dot_block(const int8_t *x, const uint8_t *q, int32_t w,
                                        int32_t acc) {
    int32_t k;
#if NAS_USE_DSP
    if (w == 4) {
        const uint32_t xv = nas_load32(x);
        return nas_mac4(__sxtb16((int8x4_t)xv), nas_sxtb16_odd(xv), nas_load32(q), acc);
    }
#endif
    for (k = 0; k < w; k++) {
        acc += (int32_t)x[k] * nas_rle_w(q + k);
    }
    return acc;
}

/* One weight wk applied to n output pixels, pixel t reading input column ix + t * sx of the
 * input row xr (a channel's byte of column 0, c bytes per column): acc[t] += xr[column] * wk
 * where the column is inside the input (padding contributes 0). */
static void nas_rle_tap(const int8_t *xr, int32_t c, int32_t in_w, int32_t ix, int32_t sx,
                        int32_t n, int32_t wk, int32_t *acc) {
    int32_t t;
    for (t = 0; t < n; t++, ix += sx) {
        if ((uint32_t)ix < (uint32_t)in_w) {
            acc[t] += (int32_t)xr[(size_t)ix * (size_t)c] * wk;
        }
    }
}

/* nas_rq_apply (same results); on Cortex-M the saturation of the usual s >= 33 form is one
 * SSAT. */
static inline int8_t nas_rle_requant(int32_t acc, const nas_rq_prep *p) {
#if NAS_USE_DSP
    if (p->fast) {
        const int32_t hi = (int32_t)nas_asr64((int64_t)acc * (int64_t)p->d.m, 32);
        return (int8_t)__ssat(nas_asr32(hi + p->round_hi, p->shift_hi), 8);
    }
#endif
    return nas_rq_apply(acc, p);
}

/* Output pixels per walk of a coded row: each entry is decoded once for up to this many
 * consecutive pixels of an output row (four int32 accumulators in registers). */
#define NAS_RLE_PX 4

/* Coded convolution: acc[t] += window of pixel t . one output channel's row of entries
 * (columns [kh][kw][in_c]) for n = 1 or 4 consecutive pixels of an output row, pixel t's
 * window at input row iy0 and column ix0 + t * sx; four pixels only where every tap of the
 * four windows is inside the input along the width. Returns the end of the row's entries.
 * When in_c is a multiple of the block, a block is `block` consecutive input channels at one
 * kernel position: decoded once for the four pixels (one weight load, the DSP dot product for
 * blocks of 4); entries whose kernel row (or, for one pixel, kernel column) falls in the
 * padding are skipped. Otherwise (blocks straddling kernel positions) weight by weight. */
static const uint8_t *nas_rle_conv_group(const nas_rle_view *v, int32_t count, const uint8_t *q,
                                         const int8_t *x, const nas_hwc *in, int32_t kw,
                                         int32_t sx, int32_t iy0, int32_t ix0, int32_t n,
                                         int32_t *acc) {
    const int32_t cin = in->c, blk = v->block, kc = kw * cin;
    const int32_t xrow = in->w * cin, ps = sx * cin;
    int32_t e, k;
    if (cin % blk == 0) {
        /* d = column - c_lo, c_lo the first column of the first kernel row inside the
         * input; the entry is inside iff d < c_n (unsigned: rows above wrap around) */
        const int32_t ky_lo = iy0 < 0 ? -iy0 : 0, kx_lo = ix0 < 0 ? -ix0 : 0;
        const int32_t kx_end = in->w - ix0 < kw ? in->w - ix0 : kw;
        const uint32_t c_n = in->h - iy0 > ky_lo ? (uint32_t)((in->h - iy0 - ky_lo) * kc) : 0;
        const uint32_t r_lo = (uint32_t)(kx_lo * cin);
        const uint32_t r_n = kx_end > kx_lo ? (uint32_t)((kx_end - kx_lo) * cin) : 0;
        /* pixel 0's tap of column d + c_lo (kernel row ky_lo + kr) is at input offset
         * off + d + kr * gap */
        const int32_t off = (iy0 + ky_lo) * xrow + ix0 * cin, gap = xrow - kc;
        uint32_t d = 0u - (uint32_t)(ky_lo * kc);
        if (n == NAS_RLE_PX) {
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#if NAS_USE_DSP
            if (blk == 4) {
                for (e = 0; e < count; e++) {
                    d += (uint32_t)*q++ * 4u;
                    if (d < c_n) {
                        const int32_t kr = (int32_t)(d / (uint32_t)kc);
                        const int8_t *xp = x + (off + (int32_t)d + kr * gap);
                        const uint32_t wv = nas_load32(q);
                        const int32_t w02 = __sxtb16((int8x4_t)wv), w13 = nas_sxtb16_odd(wv);
                        uint32_t xv = nas_load32(xp);
                        s0 = __smlad(__sxtb16((int8x4_t)xv), w02,
                                     __smlad(nas_sxtb16_odd(xv), w13, s0));
                        xv = nas_load32(xp + ps);
                        s1 = __smlad(__sxtb16((int8x4_t)xv), w02,
                                     __smlad(nas_sxtb16_odd(xv), w13, s1));
                        xv = nas_load32(xp + 2 * ps);
                        s2 = __smlad(__sxtb16((int8x4_t)xv), w02,
                                     __smlad(nas_sxtb16_odd(xv), w13, s2));
                        xv = nas_load32(xp + 3 * ps);
                        s3 = __smlad(__sxtb16((int8x4_t)xv), w02,
                                     __smlad(nas_sxtb16_odd(xv), w13, s3));
                    }
                    q += 4;
                    d += 4u;
                }
            } else
#endif
            {
                for (e = 0; e < count; e++) {
                    d += (uint32_t)*q++ * (uint32_t)blk;
                    if (d < c_n) {
                        const int32_t kr = (int32_t)(d / (uint32_t)kc);
                        const int8_t *xp = x + (off + (int32_t)d + kr * gap);
                        for (k = 0; k < blk; k++) {
                            const int32_t wk = nas_rle_w(q + k);
                            s0 += (int32_t)xp[k] * wk;
                            s1 += (int32_t)xp[ps + k] * wk;
                            s2 += (int32_t)xp[2 * ps + k] * wk;
                            s3 += (int32_t)xp[3 * ps + k] * wk;
                        }
                    }
                    q += blk;
                    d += (uint32_t)blk;
                }
            }
            acc[0] += s0;
            acc[1] += s1;
            acc[2] += s2;
            acc[3] += s3;
        } else {
            int32_t s0 = 0;
            for (e = 0; e < count; e++) {
                d += (uint32_t)*q++ * (uint32_t)blk;
                if (d < c_n) {
                    const uint32_t kr = d / (uint32_t)kc, r = d - kr * (uint32_t)kc;
                    if (r - r_lo < r_n) {
                        s0 = nas_rle_dot_block(x + (off + (int32_t)d + (int32_t)kr * gap), q,
                                               blk, s0);
                    }
                }
                q += blk;
                d += (uint32_t)blk;
            }
            acc[0] += s0;
        }
    } else {
        int32_t cursor = 0;
        for (e = 0; e < count; e++) {
            const int32_t c0 = (cursor += *q++) * blk;
            const int32_t w = v->cols - c0 < blk ? v->cols - c0 : blk;
            for (k = 0; k < w; k++) {
                const int32_t col = c0 + k, ky = col / kc, r = col - ky * kc, kx = r / cin;
                const int32_t iy = iy0 + ky;
                if ((uint32_t)iy < (uint32_t)in->h) {
                    nas_rle_tap(x + (iy * xrow + r - kx * cin), cin, in->w, ix0 + kx, sx, n,
                                nas_rle_w(q + k), acc);
                }
            }
            q += w;
            cursor++;
        }
    }
    return q;
}

/* Pixels ox_lo <= ox < ox_hi of an output row (stride sx, padding px, kernel width kw) have
 * every tap inside the input along the width; *ox_hi is clamped to the output width, and both
 * are set to `ow` when fewer than four pixels are inside. */
static void nas_rle_inside(int32_t in_w, int32_t ow, int32_t kw, int32_t sx, int32_t px,
                           int32_t *ox_lo, int32_t *ox_hi) {
    const int32_t lo = (px + sx - 1) / sx;
    int32_t hi = in_w - kw + px >= 0 ? (in_w - kw + px) / sx + 1 : 0;
    hi = hi < ow ? hi : ow;
    *ox_lo = hi - lo >= NAS_RLE_PX ? lo : ow;
    *ox_hi = hi - lo >= NAS_RLE_PX ? hi : ow;
}

/* Output channel outer (its row of entries is found once and its requantization prepared
 * once), then output rows, then pixels: those inside along the width in groups of four (the
 * last group overlapping the one before when their count is not a multiple of four: a few
 * outputs are computed twice, identically), the others one by one. */
void nas_conv2d_rle_s8(const int8_t *x, const nas_hwc *in, const uint8_t *w,
                       const int32_t *bias, const nas_requant *rq, const nas_window *win,
                       const nas_hwc *out, int8_t *y) {
    const nas_rle_view v = nas_rle_open(w);
    const int32_t ow = out->w, oc = out->c, sx = win->stride[1], px = win->pad[1];
    const uint8_t *row = v.entries;
    int32_t o, oy, ox, t, n, a, b;
    nas_rle_inside(in->w, ow, win->k[1], sx, px, &a, &b);
    for (o = 0; o < oc; o++) {
        const int32_t count = nas_rle_count(&v, o);
        const nas_rq_prep m = nas_rq_prepare(nas_rle_rq(rq, o));
        const uint8_t *next = row;
        for (oy = 0; oy < out->h; oy++) {
            const int32_t iy0 = oy * win->stride[0] - win->pad[0];
            int8_t *yr = y + (size_t)oy * (size_t)ow * (size_t)oc + (size_t)o;
            for (ox = 0; ox < ow; ox += n) {
                int32_t acc[NAS_RLE_PX];
                n = 1;
                if (ox >= a && ox < b) {
                    n = NAS_RLE_PX;
                    if (ox + n > b) {
                        ox = b - n;
                    }
                }
                acc[0] = acc[1] = acc[2] = acc[3] = bias[o];
                next = nas_rle_conv_group(&v, count, row, x, in, win->k[1], sx, iy0,
                                          ox * sx - px, n, acc);
                for (t = 0; t < n; t++) {
                    yr[(size_t)(ox + t) * (size_t)oc] = nas_rle_requant(acc[t], &m);
                }
            }
        }
        row = next;
    }
}

/* Kernel rows a coded depthwise channel may keep for the fast path (larger kernels take the
 * weight-by-weight path). */
#define NAS_RLE_DW_ROWS 8

/* One output of a coded depthwise convolution, weight by weight (blocks that are not kernel
 * rows, or kernels taller than NAS_RLE_DW_ROWS); *p walks past the channel's entries. */
static int32_t nas_rle_dw_pixel(const nas_rle_view *v, int32_t count, const uint8_t **p,
                                const int8_t *x, const nas_hwc *in, int32_t kw, int32_t iy0,
                                int32_t ix0, int32_t acc) {
    const uint8_t *q = *p;
    int32_t e, k, cursor = 0;
    for (e = 0; e < count; e++) {
        const int32_t c0 = (cursor += *q++) * v->block;
        const int32_t w = v->cols - c0 < v->block ? v->cols - c0 : v->block;
        for (k = 0; k < w; k++) {
            const int32_t ky = (c0 + k) / kw, iy = iy0 + ky, ix = ix0 + c0 + k - ky * kw;
            if ((uint32_t)iy < (uint32_t)in->h && (uint32_t)ix < (uint32_t)in->w) {
                acc += (int32_t)x[((size_t)iy * (size_t)in->w + (size_t)ix) * (size_t)in->c] *
                       nas_rle_w(q + k);
            }
        }
        q += w;
        cursor++;
    }
    *p = q;
    return acc;
}

/* Channel outer: its entries (one per kept kernel row, block = kw as the generator codes it)
 * are decoded once into a list of rows and their weights; per output row, the kept rows
 * inside the input; then per pixel only the kept rows' MACs, four pixels at a time inside
 * along the width (each weight loaded once for the four), else one pixel with its taps
 * clipped to the input. */
void nas_depthwise_conv2d_rle_s8(const int8_t *x, const nas_hwc *in, const uint8_t *w,
                                 const int32_t *bias, const nas_requant *rq,
                                 const nas_window *win, const nas_hwc *out, int8_t *y) {
    const nas_rle_view v = nas_rle_open(w);
    const int32_t c = in->c, kw = win->k[1], sx = win->stride[1], px = win->pad[1];
    const int32_t ow = out->w, ps = sx * c;
    const size_t xrow = (size_t)in->w * (size_t)c;
    const uint8_t *row = v.entries;
    int32_t ch, oy, ox, e, j, k, a, b, n;
    nas_rle_inside(in->w, ow, kw, sx, px, &a, &b);
    for (ch = 0; ch < c; ch++) {
        const int32_t count = nas_rle_count(&v, ch);
        const nas_rq_prep m = nas_rq_prepare(nas_rle_rq(rq, ch));
        int32_t kyr[NAS_RLE_DW_ROWS];
        const uint8_t *wr[NAS_RLE_DW_ROWS];
        const uint8_t *q = row;
        if (v.block != kw || count > NAS_RLE_DW_ROWS) {
            for (oy = 0; oy < out->h; oy++) {
                for (ox = 0; ox < ow; ox++) {
                    q = row;
                    y[((size_t)oy * (size_t)ow + (size_t)ox) * (size_t)c + (size_t)ch] =
                        nas_rle_requant(nas_rle_dw_pixel(&v, count, &q, x + ch, in, kw,
                                                      oy * win->stride[0] - win->pad[0],
                                                      ox * sx - px, bias[ch]),
                                     &m);
                }
            }
            /* the end of the row's entries (also when there are no outputs) */
            (void)nas_rle_dw_pixel(&v, count, &row, x, in, kw, -kw - in->h, 0, 0);
            continue;
        }
        for (e = 0, k = 0; e < count; e++) {
            k += *q++;
            kyr[e] = k++;
            wr[e] = q;
            q += kw;
        }
        row = q;
        for (oy = 0; oy < out->h; oy++) {
            const int32_t iy0 = oy * win->stride[0] - win->pad[0];
            const int8_t *xr[NAS_RLE_DW_ROWS]; /* channel ch of the kept rows inside */
            const uint8_t *wa[NAS_RLE_DW_ROWS];
            int8_t *yr = y + (size_t)oy * (size_t)ow * (size_t)c + (size_t)ch;
            int32_t nr = 0;
            for (e = 0; e < count; e++) {
                if ((uint32_t)(iy0 + kyr[e]) < (uint32_t)in->h) {
                    xr[nr] = x + (size_t)(iy0 + kyr[e]) * xrow + (size_t)ch;
                    wa[nr++] = wr[e];
                }
            }
            for (ox = 0; ox < ow; ox += n) {
                const int32_t ix0 = ox * sx - px;
                int32_t acc[NAS_RLE_PX], t;
                /* inside: groups of four; the last one or two pixels inside one by one (a
                 * group overlapping the one before would compute four), the last three as a
                 * group overlapping it */
                if (ox >= a && ox < b && b - ox >= NAS_RLE_PX - 1) {
                    int32_t s0 = bias[ch], s1 = s0, s2 = s0, s3 = s0;
                    n = NAS_RLE_PX;
                    if (ox + n > b) {
                        ox = b - n;
                    }
                    for (j = 0; j < nr; j++) {
                        const int8_t *xp = xr[j] + (size_t)(ox * sx - px) * (size_t)c;
                        for (k = 0; k < kw; k++, xp += c) {
                            const int32_t wk = nas_rle_w(wa[j] + k);
                            s0 += (int32_t)xp[0] * wk;
                            s1 += (int32_t)xp[ps] * wk;
                            s2 += (int32_t)xp[2 * ps] * wk;
                            s3 += (int32_t)xp[3 * ps] * wk;
                        }
                    }
                    acc[0] = s0;
                    acc[1] = s1;
                    acc[2] = s2;
                    acc[3] = s3;
                } else {
                    const int32_t kx0 = ix0 < 0 ? -ix0 : 0;
                    const int32_t kx1 = in->w - ix0 < kw ? in->w - ix0 : kw;
                    int32_t s0 = bias[ch];
                    n = 1;
                    for (j = 0; j < nr && kx0 < kx1; j++) {
                        const int8_t *xp = xr[j] + (size_t)(ix0 + kx0) * (size_t)c;
                        for (k = kx0; k < kx1; k++, xp += c) {
                            s0 += (int32_t)xp[0] * nas_rle_w(wa[j] + k);
                        }
                    }
                    acc[0] = s0;
                }
                for (t = 0; t < n; t++) {
                    yr[(size_t)(ox + t) * (size_t)c] = nas_rle_requant(acc[t], &m);
                }
            }
        }
    }
}
