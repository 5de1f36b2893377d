/*
 * nas_kernels.h - C99 reference kernels of the int8 integer graph (the `quant` crate).
 *
 * Every kernel is bit-exact with the Rust integer interpreter (quant::Interpreter), which is
 * the specification: same rounding (round half up for requantization, half away from zero
 * for divisions), same shifts, same saturation, same int32 bounds. Naming follows CMSIS-NN:
 * nas_<op>_s8, with dimensions and quantization parameters in small structs.
 *
 * Integer conventions (why the code looks the way it does):
 *  - Right shifts of possibly negative values use nas_asr32/nas_asr64 (floor), because `>>`
 *    of a negative value is implementation-defined in C99.
 *  - Left shifts of possibly negative values are written as multiplications by 2^k, because
 *    `<<` of a negative value is undefined behaviour in C99 (and flagged by UBSan).
 *  - The int32 bounds proven by quant's validate() hold here too, so no int32 overflow occurs.
 *  - No scratch memory: softmax and layer norm recompute the cheap per-element terms in a
 *    second pass instead of keeping an int32 row (same values, less SRAM).
 *  - Activations are int8 with zero point 0, except softmax outputs: uint8 probabilities p
 *    at 2^-(8 + out_shift) stored as p - 128 (zero point -128), read only as a MatMul's first
 *    operand.
 *
 * Where the Cortex-M DSP extension is present (__ARM_FEATURE_DSP), the int8 dot products of
 * Linear, Conv2d, transposed MatMul and the attention kernels use SXTB16/SMLAD (2 MACs per
 * instruction; UXTB16 for the uint8 probabilities of the fused A V), in blocks of 4 output
 * columns (portable C: 4 columns x 2 rows for Linear), and depthwise Conv2d SMLABB/SMLATT on
 * 4 channels per word. int32 accumulation is exact and every partial sum obeys the same bound
 * as the full sum, so the result is identical to the portable loop.
 */
#ifndef NAS_KERNELS_H
#define NAS_KERNELS_H

#include <stdint.h>
#include <string.h>
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
#include <arm_acle.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Largest tensor rank nas_transpose_s8 accepts. */
#define NAS_MAX_RANK 8

/* A dyadic multiplier m * 2^-s, 0 <= m <= 2^31-1, 0 <= s <= 62 (quant::Dyadic). */
typedef struct {
    int32_t m;
    int32_t s;
} nas_dyadic;

/* Output requantization: one dyadic per tensor (per_channel = 0, mult[0]) or per channel. */
typedef struct {
    const nas_dyadic *mult;
    int32_t per_channel;
} nas_requant;

/* int8 + int8 -> int8 (quant::AddParams): sat8((a ma + b mb + 2^(s-1)) >> s). */
typedef struct {
    int32_t ma;
    int32_t mb;
    int32_t s;
} nas_add_params;

/* 2-d window: kernel, stride, symmetric zero padding, each {along H, along W}. */
typedef struct {
    int32_t k[2];
    int32_t stride[2];
    int32_t pad[2];
} nas_window;

/* HWC tensor dims (no batch axis). */
typedef struct {
    int32_t h;
    int32_t w;
    int32_t c;
} nas_hwc;

/* Linear: rows x in_f -> rows x out_f, weight [out_f, in_f]. */
typedef struct {
    int32_t rows;
    int32_t in_f;
    int32_t out_f;
} nas_linear_dims;

/* MatMul: a [batch, m, k] x b [batch, k, n] (or b [batch, n, k] when transpose_b).
 * a_offset = -(zero point of a): 128 when a is a softmax output (uint8 probabilities p stored
 * as p - 128), else 0. */
typedef struct {
    int32_t batch;
    int32_t m;
    int32_t k;
    int32_t n;
    int32_t transpose_b;
    int32_t a_offset;
} nas_matmul_dims;

/* I-BERT i-exp constants (quant::IExp). */
typedef struct {
    int32_t q_ln2;
    int32_t q_b;
    int32_t q_c;
} nas_iexp;

/* i-softmax (quant::ISoftmax): row length and internal input shift j (-8..23). `lut`, when
 * not NULL, is TinyFormer's exponent table: lut[d] = i-exp of the shifted difference -d for
 * d = max - x in 0..255 (the generator bakes it exactly as the interpreter computes e_i).
 * out_shift o (0..8): the uint8 probabilities are at scale 2^-(8 + o), saturating at 255. */
typedef struct {
    int32_t len;
    int32_t j;
    nas_iexp exp;
    const int32_t *lut;
    int32_t out_shift;
} nas_softmax_params;

/* Integer LayerNorm (quant::IntLayerNorm + NormParams). */
typedef struct {
    int32_t len;      /* N */
    int32_t r;        /* even right shift of each square */
    uint32_t eps_q;   /* eps in variance units */
    int32_t g;        /* fractional bits of the normalised value */
    const int8_t *gamma;
    const int32_t *beta;
    nas_dyadic requant;
} nas_layernorm_params;

/* ---- scalar helpers (inline: used by every kernel) ---- */

/* floor(x / 2^s) for 0 <= s <= 31, without relying on implementation-defined `>>`: GCC and
 * Clang define `>>` of a negative value as the arithmetic shift (one ASR), elsewhere the
 * portable form. */
static inline int32_t nas_asr32(int32_t x, int32_t s) {
#if defined(__GNUC__)
    return x >> s;
#else
    return x >= 0 ? (x >> s) : ~((~x) >> s);
#endif
}

/* floor(x / 2^s) for 0 <= s <= 63. */
static inline int64_t nas_asr64(int64_t x, int32_t s) {
#if defined(__GNUC__)
    return x >> s;
#else
    return x >= 0 ? (x >> s) : ~((~x) >> s);
#endif
}

static inline int8_t nas_sat8(int64_t x) {
    return (int8_t)(x < -128 ? -128 : (x > 127 ? 127 : x));
}

static inline int8_t nas_sat8_32(int32_t x) {
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    /* one SSAT (GCC compiles the clamp below to two compares and two branches) */
    return (int8_t)__ssat(x, 8);
#else
    return (int8_t)(x < -128 ? -128 : (x > 127 ? 127 : x));
#endif
}

/* quant::Dyadic::requantize: sat8(floor((acc m + 2^(s-1)) / 2^s)). The 32x32->64 product is
 * one SMULL on Cortex-M3/M4/M7 and mul+mulh on RV32IM; |acc m| + 2^61 < 2^63: no overflow.
 * For s >= 33 (the usual case) the rounding constant only touches the high word and
 * floor(floor(x / 2^32) / 2^(s-32)) = floor(x / 2^s), so the work is the high word of the
 * product, one add and one 32-bit shift: |hi| < 2^30 and 2^(s-33) <= 2^29, no overflow. */
static inline int8_t nas_requantize(int32_t acc, nas_dyadic d) {
    int64_t p = (int64_t)acc * (int64_t)d.m;
    if (d.s >= 33) {
        int32_t hi = (int32_t)nas_asr64(p, 32);
        return nas_sat8_32(nas_asr32(hi + ((int32_t)1 << (d.s - 33)), d.s - 32));
    }
    if (d.s > 0) {
        p = nas_asr64(p + ((int64_t)1 << (d.s - 1)), d.s);
    }
    return nas_sat8(p);
}

/* A dyadic prepared for many requantizations: for s >= 33 (`fast`), the high-word form of
 * nas_requantize with its rounding constant and shift computed once. Same results. */
typedef struct {
    nas_dyadic d;
    int32_t fast;
    int32_t round_hi;
    int32_t shift_hi;
} nas_rq_prep;

static inline nas_rq_prep nas_rq_prepare(nas_dyadic d) {
    nas_rq_prep p;
    p.d = d;
    p.fast = d.s >= 33;
    p.round_hi = p.fast ? (int32_t)1 << (d.s - 33) : 0;
    p.shift_hi = p.fast ? d.s - 32 : 0;
    return p;
}

/* The s >= 33 form alone: SMULL (high word), ADD, ASR, saturate. */
static inline int8_t nas_rq_fast(int32_t acc, int32_t m, int32_t round_hi, int32_t shift_hi) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    /* SMMLA: round_hi + the high word of acc m, one instruction (GCC emits SMULL + ADD) */
    int32_t hi;
    __asm__("smmla %0, %1, %2, %3" : "=r"(hi) : "r"(acc), "r"(m), "r"(round_hi));
    return nas_sat8_32(nas_asr32(hi, shift_hi));
#else
    int32_t hi = (int32_t)nas_asr64((int64_t)acc * (int64_t)m, 32);
    return nas_sat8_32(nas_asr32(hi + round_hi, shift_hi));
#endif
}

/* nas_rq_fast of an unprepared dyadic with s >= 33 (a per-channel multiplier of a layer whose
 * multipliers are all of that form: nas_rq_all_fast). */
static inline int8_t nas_rq_fast_d(int32_t acc, nas_dyadic d) {
    return nas_rq_fast(acc, d.m, (int32_t)1 << (d.s - 33), d.s - 32);
}

/* Whether all n multipliers take the s >= 33 form (checked once per layer call). */
static inline int32_t nas_rq_all_fast(const nas_dyadic *d, int32_t n) {
    int32_t i;
    for (i = 0; i < n; i++) {
        if (d[i].s < 33) {
            return 0;
        }
    }
    return 1;
}

static inline int8_t nas_rq_apply(int32_t acc, const nas_rq_prep *p) {
    if (p->fast) {
        return nas_rq_fast(acc, p->d.m, p->round_hi, p->shift_hi);
    }
    return nas_requantize(acc, p->d);
}

/* quant::div_round: n / d rounded half away from zero, d > 0. */
static inline int32_t nas_div_round(int32_t n, int32_t d) {
    return n >= 0 ? (n + d / 2) / d : -((-n + d / 2) / d);
}

/* quant::isqrt_u32: exact floor(sqrt(n)) by I-BERT's Newton iteration. */
uint32_t nas_isqrt_u32(uint32_t n);

/* quant::IExp::eval (i-exp of q <= 0). */
int32_t nas_iexp_eval(const nas_iexp *e, int32_t q);

/* ---- kernels ---- */

/* Bytes of the optional operand tile of nas_linear_s8 / nas_linear_wrl_s8: 4 input rows
 * extended to int16 lanes (8 in_f bytes), used on Cortex-M cores with the DSP extension when
 * there are 4 rows or more and in_f is a multiple of 4; 0 when it would not be used. */
static inline int32_t nas_linear_s8_get_buffer_size(const nas_linear_dims *d) {
    return d->rows >= 4 && d->in_f > 0 && d->in_f % 4 == 0 ? 8 * d->in_f : 0;
}

/* y[r, o] = requant_o(bias[o] + sum_i x[r, i] w[o, i]). `tile`: NULL, or a word-aligned buffer
 * of nas_linear_s8_get_buffer_size(d) bytes that the DSP build uses to read every weight row
 * once per 4 input rows (same results). */
void nas_linear_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                   const nas_requant *rq, const nas_linear_dims *d, int8_t *y, int32_t *tile);

/* The same, output transposed: y[o * y_row + r] (Weight-Reuse layout, pulp-transformer 4.6.2:
 * the V projection written [H P, S] so that the fused attention's A V reads V^T rows). Rows
 * are y_row >= rows bytes apart: the exporter pads them to a word so that every V^T row
 * starts word aligned for the SIMD loads (the padding bytes are never written; the tiled
 * attention reads them times zero probabilities). */
void nas_linear_wrl_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                       const nas_requant *rq, const nas_linear_dims *d, int32_t y_row,
                       int8_t *y, int32_t *tile);

/* Batched a x b (or a x b^T), y = requant(sum_k (a + a_offset) b). */
void nas_matmul_s8(const int8_t *a, const int8_t *b, const nas_matmul_dims *d,
                   nas_dyadic rq, int8_t *y);

/* Element-wise add of n values (also AddEmbedding with b = the constant embedding). */
void nas_add_s8(const int8_t *a, const int8_t *b, int32_t n, const nas_add_params *p,
                int8_t *y);

/* y = max(x, 0). */
void nas_relu_s8(const int8_t *x, int32_t n, int8_t *y);

/* y = table[x + 128]; the generator bakes the 256-entry i-GELU table exactly as quant's
 * interpreter builds it (Int8Gelu::eval of every int8). */
void nas_lut_s8(const int8_t *x, int32_t n, const int8_t *table, int8_t *y);

/* y = requant(x) element-wise (quant Op::Requant). */
void nas_requant_s8(const int8_t *x, int32_t n, nas_dyadic d, int8_t *y);

/* i-softmax over rows of p->len values: uint8 probabilities p at scale 2^-(8 + p->out_shift),
 * stored as the int8 p - 128 (zero point -128). */
void nas_softmax_s8(const int8_t *x, int32_t rows, const nas_softmax_params *p, int8_t *y);

/* I-BERT i-LayerNorm over rows of p->len values. */
void nas_layernorm_s8(const int8_t *x, int32_t rows, const nas_layernorm_params *p, int8_t *y);

/* TinyFormer Scaled-LayerNorm (int16 normalised value and affine result). */
void nas_scaled_layernorm_s8(const int8_t *x, int32_t rows, const nas_layernorm_params *p,
                             int8_t *y);

/* [T, D] -> [T + 1, D]: the class token first, then x. */
void nas_concat_class_token_s8(const int8_t *x, int32_t t, int32_t d, const int8_t *token,
                               int8_t *y);

/* y = x[index * n .. (index + 1) * n] (SelectToken); also a plain copy (Reshape). */
void nas_copy_s8(const int8_t *x, int32_t n, int8_t *y);

/* Axis permutation: output axis i is input axis perm[i]; rank <= NAS_MAX_RANK. */
void nas_transpose_s8(const int8_t *x, const int32_t *shape, const int32_t *perm,
                      int32_t rank, int8_t *y);

/* Mean over the leading axis of [n, c]: div_round(sum, n) per column (SeqMeanPool, and
 * GlobalAvgPool with n = H W). */
void nas_mean_rows_s8(const int8_t *x, int32_t n, int32_t c, int8_t *y);

/* HWC convolution, weight [out_c, kh, kw, in_c]. A layer whose kernel rows (kw in_c bytes)
 * are not whole words and whose window is at most 64 bytes uses 128 bytes of stack for it. */
void nas_conv2d_s8(const int8_t *x, const nas_hwc *in, const int8_t *w, const int32_t *bias,
                   const nas_requant *rq, const nas_window *win, const nas_hwc *out,
                   int8_t *y);

/* HWC depthwise convolution (multiplier 1), weight [kh, kw, c]. */
void nas_depthwise_conv2d_s8(const int8_t *x, const nas_hwc *in, const int8_t *w,
                             const int32_t *bias, const nas_requant *rq,
                             const nas_window *win, const nas_hwc *out, int8_t *y);

/* HWC max (avg = 0) or average (avg = 1, div_round over in-range positions) pooling. */
void nas_pool2d_s8(const int8_t *x, const nas_hwc *in, const nas_window *win,
                   const nas_hwc *out, int32_t avg, int8_t *y);


/* ---- attention (pulp-transformer Sec. 4.5-4.6) ---- */

/* A strided [heads, rows, inner] int8 operand: element (h, r, i) at h*head + r*row + i*inner. */
typedef struct {
    int32_t head;
    int32_t row;
    int32_t inner;
} nas_strides;

/* Fused attention: out[h, s, :] = requant_o(softmax_t(requant_s(q[h, s, :] . k[h, t, :]))
 * . v[h, t, :]). k.head == 0 is the FWSA form (keys = the shared input X, queries = X W*). */
typedef struct {
    int32_t heads;   /* H */
    int32_t rows;    /* S: query rows */
    int32_t keys;    /* T: keys, the softmax row length */
    int32_t inner;   /* P (E for FWSA): reduction of q . k */
    int32_t v_inner; /* P: inner length of v and out */
    nas_strides q, k, v, out;
    nas_dyadic score_rq;
    nas_softmax_params softmax;
    nas_dyadic out_rq;
    /* 1: the scratch also holds the operand tiles (nas_attention_s8_get_buffer_size) */
    int32_t tiled;
} nas_attention_params;

/* Scratch bytes nas_attention_s8 needs: one row of scores, then of uint8 probabilities; with
 * `tiled` (the generator sets it only for inner a multiple of 4) the Cortex-M DSP build's 4
 * rows of scores, keys rounded up to 4, and its operand tiles: 4 rows of probabilities and 4
 * rows of queries extended to int16 lanes. */
static inline int32_t nas_attention_s8_get_buffer_size(const nas_attention_params *p) {
    const int32_t kp = (p->keys + 3) / 4 * 4;
    if (p->tiled) {
        return 4 * kp + 8 * kp + 8 * p->inner;
    }
    return p->keys;
}

/* Depth-first tiled MHSA / FWSA core, loop order S -> H -> S (paper 4.6.3): for each query
 * row s and head h, one row of scores (q . k, requantized), its i-softmax in place as uint8
 * probabilities, then the output row (that row . v, unsigned x signed) - the H x S x S
 * attention matrix is never materialized. Bit-exact with MatMul -> Softmax -> MatMul of
 * quant's interpreter. `scratch` holds nas_attention_s8_get_buffer_size(p) bytes, word
 * aligned. With `tiled` the DSP build runs H -> groups of 4 query rows instead, so that each
 * key and each V^T row read serves 4 rows (same results; 4 rows of scores live). */
void nas_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v,
                      const nas_attention_params *p, int8_t *scratch, int8_t *out);

/* The FWSA kernel (paper 4.6.4): the same schedule with the keys read from the shared input
 * X (k.head must be 0), queries M2 = X W*_h from the fused-weight projection. */
void nas_fwsa_s8(const int8_t *m2, const int8_t *x, const int8_t *v,
                 const nas_attention_params *p, int8_t *scratch, int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* NAS_KERNELS_H */
