/*
 * nas_kernels.c - C99 reference kernels, bit-exact with quant's Rust interpreter.
 * See nas_kernels.h for the integer conventions. Each function names the Rust function it
 * mirrors; keep the two in step.
 */
#include "nas_kernels.h"

#include "nas_dsp.h"

/* Dot products of int8 rows: every partial sum obeys the bound quant's validate() proves for
 * the full sum, so int32 addition in any order (SIMD pairs, blocked loops) gives exactly the
 * interpreter's value. */

/* sum_i a[i] b[i] + acc over n int8 pairs. */
static int32_t nas_dot_s8(const int8_t *a, const int8_t *b, int32_t n, int32_t acc) {
    int32_t i = 0;
#if NAS_USE_DSP
    for (; i + 4 <= n; i += 4) {
        uint32_t wa = nas_load32(a + i);
        acc = nas_mac4(__sxtb16((int8x4_t)wa), nas_sxtb16_odd(wa), nas_load32(b + i), acc);
    }
#endif
    for (; i < n; i++) {
        acc += (int32_t)a[i] * (int32_t)b[i];
    }
    return acc;
}

/* The same with uint8 a (softmax probabilities): UXTB16 in place of SXTB16, same cost. */
static int32_t nas_dot_u8s8(const uint8_t *a, const int8_t *b, int32_t n, int32_t acc) {
    int32_t i = 0;
#if NAS_USE_DSP
    for (; i + 4 <= n; i += 4) {
        uint32_t wa = nas_load32(a + i);
        acc = nas_mac4((int32_t)__uxtb16(wa), nas_uxtb16_odd(wa), nas_load32(b + i), acc);
    }
#endif
    for (; i < n; i++) {
        acc += (int32_t)a[i] * (int32_t)b[i];
    }
    return acc;
}

/* sum_i b[i] (the zero-point correction of a MatMul whose a is stored with zero point -128). */
static int32_t nas_sum_s8(const int8_t *b, int32_t n) {
    int32_t i, acc = 0;
    for (i = 0; i < n; i++) {
        acc += b[i];
    }
    return acc;
}

#if NAS_USE_DSP
/* The inner loop of nas_dot_1x4_s8 over n4 > 0 (a multiple of 4) bytes, in assembly: GCC 12
 * keeps the four row pointers, the loop end and the SIMD temporaries live at once and spills
 * 8 of 35 instructions per iteration to the stack. Written by hand it fits the 14 registers:
 * 4 accumulators, a, rows 0 and 2 (rows 1 and 3 at +bs), bs, end and 5 temporaries (lr the
 * fifth), 25 instructions per 16 MACs (LDR of an unaligned word is legal on M4/M7). AEXT
 * extends the bytes of a: "sxtb16" for int8, "uxtb16" for uint8 probabilities (same cost).
 *
 * Scheduled for the Cortex-M7's dual issue (export/tools/insn_count.c, "The Cortex-M7 model"):
 * an extend issues only as the older op of a pair and a MAC may pair beside it, so each extend
 * carries the SMLAD of the extend before it; two rows' words are loaded ahead (an LDR result
 * feeds an extend two cycles later), the compare rides beside a load and the branch beside
 * the last SMLAD: 15 modelled cycles per 16 MACs instead of 24 when every step waited for the
 * one before. On the single-issue M4 it only saves load-use stalls. */
#define NAS_DOT_1X4_DSP(NAME, ATYPE, AEXT)                                                     \
    static inline void NAME(const ATYPE *a, const int8_t *b, size_t bs, int32_t n4,            \
                            int32_t *acc) {                                                    \
        const int8_t *b2 = b + 2 * bs;                                                         \
        const ATYPE *end = a + n4;                                                             \
        int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];                            \
        uint32_t x02, x13, w, t;                                                               \
        __asm__ volatile("1:\n\t"                                                              \
                         "ldr %[x13], [%[a]], #4\n\t"                                          \
                         "ldr %[w], [%[b], %[bs]]\n\t"                                         \
                         AEXT " %[x02], %[x13]\n\t"                                            \
                         "ldr %[t], [%[b]], #4\n\t"                                            \
                         AEXT " %[x13], %[x13], ror #8\n\t"                                    \
                         "sxtb16 lr, %[w]\n\t"                                                 \
                         "sxtb16 %[w], %[w], ror #8\n\t"                                       \
                         "smlad %[s1], %[x02], lr, %[s1]\n\t"                                  \
                         "sxtb16 lr, %[t]\n\t"                                                 \
                         "smlad %[s1], %[x13], %[w], %[s1]\n\t"                                \
                         "sxtb16 %[t], %[t], ror #8\n\t"                                       \
                         "smlad %[s0], %[x02], lr, %[s0]\n\t"                                  \
                         "ldr %[w], [%[b2], %[bs]]\n\t"                                        \
                         "smlad %[s0], %[x13], %[t], %[s0]\n\t"                                \
                         "ldr %[t], [%[b2]], #4\n\t"                                           \
                         "cmp %[a], %[end]\n\t"                                                \
                         "sxtb16 lr, %[w]\n\t"                                                 \
                         "sxtb16 %[w], %[w], ror #8\n\t"                                       \
                         "smlad %[s3], %[x02], lr, %[s3]\n\t"                                  \
                         "sxtb16 lr, %[t]\n\t"                                                 \
                         "smlad %[s3], %[x13], %[w], %[s3]\n\t"                                \
                         "sxtb16 %[t], %[t], ror #8\n\t"                                       \
                         "smlad %[s2], %[x02], lr, %[s2]\n\t"                                  \
                         "smlad %[s2], %[x13], %[t], %[s2]\n\t"                                \
                         "bne 1b\n\t"                                                          \
                         : [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2), [s3] "+r"(s3),         \
                           [a] "+&r"(a), [b] "+&r"(b), [b2] "+&r"(b2), [x02] "=&r"(x02),       \
                           [x13] "=&r"(x13), [w] "=&r"(w), [t] "=&r"(t)                        \
                         : [bs] "r"(bs), [end] "r"(end)                                        \
                         : "cc", "memory", "lr");                                              \
        acc[0] = s0;                                                                           \
        acc[1] = s1;                                                                           \
        acc[2] = s2;                                                                           \
        acc[3] = s3;                                                                           \
    }
#if defined(__OPTIMIZE__)
NAS_DOT_1X4_DSP(nas_dot_1x4_dsp, int8_t, "sxtb16")
NAS_DOT_1X4_DSP(nas_dot_1x4_dsp_u8, uint8_t, "uxtb16")
#else
/* Unoptimized builds (-O0) keep r7 as the frame pointer, one register short of the assembly
 * loop ("impossible constraints"): the same sums by intrinsics. */
#define NAS_DOT_1X4_C(NAME, ATYPE, EXT_EVEN, EXT_ODD)                                          \
    static inline void NAME(const ATYPE *a, const int8_t *b, size_t bs, int32_t n4,            \
                            int32_t *acc) {                                                    \
        int32_t i, r;                                                                          \
        for (i = 0; i < n4; i += 4) {                                                          \
            const uint32_t wa = nas_load32(a + i);                                             \
            const int32_t a02 = (int32_t)EXT_EVEN(wa), a13 = EXT_ODD(wa);                     \
            for (r = 0; r < 4; r++) {                                                          \
                acc[r] = nas_mac4(a02, a13, nas_load32(b + (size_t)r * bs + (size_t)i), acc[r]); \
            }                                                                                  \
        }                                                                                      \
    }
NAS_DOT_1X4_C(nas_dot_1x4_dsp, int8_t, __sxtb16, nas_sxtb16_odd)
NAS_DOT_1X4_C(nas_dot_1x4_dsp_u8, uint8_t, __uxtb16, nas_uxtb16_odd)
#endif
#endif

/* acc[c] += a . b_c for the 4 rows b_c = b + c*bs (n bytes each): one load of a serves four
 * rows (the 4x1 block; on Cortex-M a 4x2 block does not fit the registers). ATYPE is int8_t,
 * or uint8_t for softmax probabilities. */
#if NAS_USE_DSP
#define NAS_DOT_1X4_SIMD(DSP, a, b, bs, i, n, acc)                                            \
    do {                                                                                       \
        (i) = (n) & ~3;                                                                        \
        if ((i) > 0) {                                                                         \
            DSP((a), (b), (bs), (i), (acc));                                                   \
        }                                                                                      \
    } while (0)
#else
#define NAS_DOT_1X4_SIMD(DSP, a, b, bs, i, n, acc) ((void)0)
#endif
#define NAS_DOT_1X4(NAME, ATYPE, DSP)                                                          \
    static inline void NAME(const ATYPE *a, const int8_t *b, size_t bs, int32_t n,             \
                            int32_t *acc) {                                                    \
        const int8_t *b1 = b + bs, *b2 = b + 2 * bs, *b3 = b + 3 * bs;                         \
        int32_t s0, s1, s2, s3, i = 0;                                                         \
        NAS_DOT_1X4_SIMD(DSP, a, b, bs, i, n, acc);                                            \
        /* local accumulators: acc may alias the int8 operands as far as C knows */            \
        s0 = acc[0];                                                                           \
        s1 = acc[1];                                                                           \
        s2 = acc[2];                                                                           \
        s3 = acc[3];                                                                           \
        for (; i < n; i++) {                                                                   \
            int32_t ai = a[i];                                                                 \
            s0 += ai * b[i];                                                                   \
            s1 += ai * b1[i];                                                                  \
            s2 += ai * b2[i];                                                                  \
            s3 += ai * b3[i];                                                                  \
        }                                                                                      \
        acc[0] = s0;                                                                           \
        acc[1] = s1;                                                                           \
        acc[2] = s2;                                                                           \
        acc[3] = s3;                                                                           \
    }
NAS_DOT_1X4(nas_dot_1x4_s8, int8_t, nas_dot_1x4_dsp)
NAS_DOT_1X4(nas_dot_1x4_u8s8, uint8_t, nas_dot_1x4_dsp_u8)

#if !NAS_USE_DSP
/* acc[2c + r] += a_r . b_c for 2 rows a_r = a + r*as and 4 rows b_c: the paper's 4x2 output
 * block (8 accumulators, each loaded operand used 4 or 2 times). Portable C: RV32 and the
 * host have the registers for it. */
static inline void nas_dot_2x4_s8(const int8_t *a, size_t as, const int8_t *b, size_t bs,
                                  int32_t n, int32_t *acc) {
    const int8_t *a0 = a, *a1 = a + as;
    const int8_t *b0 = b, *b1 = b + bs, *b2 = b + 2 * bs, *b3 = b + 3 * bs;
    int32_t s00 = acc[0], s10 = acc[1], s01 = acc[2], s11 = acc[3];
    int32_t s02 = acc[4], s12 = acc[5], s03 = acc[6], s13 = acc[7];
    int32_t i;
    for (i = 0; i < n; i++) {
        int32_t x0 = a0[i], x1 = a1[i], w;
        w = b0[i];
        s00 += x0 * w;
        s10 += x1 * w;
        w = b1[i];
        s01 += x0 * w;
        s11 += x1 * w;
        w = b2[i];
        s02 += x0 * w;
        s12 += x1 * w;
        w = b3[i];
        s03 += x0 * w;
        s13 += x1 * w;
    }
    acc[0] = s00;
    acc[1] = s10;
    acc[2] = s01;
    acc[3] = s11;
    acc[4] = s02;
    acc[5] = s12;
    acc[6] = s03;
    acc[7] = s13;
}
#endif

#if NAS_USE_DSP
/* ---- operand tiles (Cortex-M DSP) ----
 * An operand that many dot products share is extended to int16 lanes once, four rows
 * interleaved: group g (bytes 4g..4g+3) of rows 4j..4j+3 is 8 words, for each row c the SXTB16
 * (or UXTB16) of its word (bytes 0 and 2) then of its word ROR 8 (bytes 1 and 3). The inner
 * loop then extends only the streamed operand: 2 extends per 16 MACs instead of 10, and the
 * tile's 8 words per step load beside the 8 SMLADs (modelled Cortex-M7: 10 cycles per 16 MACs
 * instead of 15). Used by Linear (4 input rows at a time: nas_linear_s8_get_buffer_size) and
 * the fused attention (4 query rows, and 4 rows of probabilities). */

/* The tile helpers that Linear and the fused attention share are inlined into each (one copy
 * per caller: also keeps the instruction-count benchmark's per-function classes apart). */
#define NAS_INLINE_ALWAYS static inline __attribute__((always_inline))

/* rows [0, count) of x (row stride xs, n bytes each, n % 4 == 0) as ceil(count / 4) tile
 * blocks of 2 n words; rows past count are zero */
NAS_INLINE_ALWAYS void nas_tile_s8(const int8_t *x, size_t xs, int32_t count, int32_t n,
                                   int32_t *tile) {
    int32_t j, g, c;
    for (j = 0; j < count; j += 4) {
        for (g = 0; g < n; g += 4) {
            for (c = 0; c < 4; c++) {
                const uint32_t w =
                    j + c < count ? nas_load32(x + (size_t)(j + c) * xs + (size_t)g) : 0;
                *tile++ = __sxtb16((int8x4_t)w);
                *tile++ = nas_sxtb16_odd(w);
            }
        }
    }
}

/* one uint8 row (n4 bytes, a multiple of 4) into row `slot` (0..3) of a one-block tile */
static void nas_tile_slot_u8(const uint8_t *r, int32_t n4, int32_t slot, int32_t *tile) {
    int32_t g;
    tile += 2 * slot;
    for (g = 0; g < n4; g += 4, tile += 8) {
        const uint32_t w = nas_load32(r + g);
        tile[0] = (int32_t)__uxtb16(w);
        tile[1] = nas_uxtb16_odd(w);
    }
}

/* The dot product's instruction order: NAS_TILE_DUAL_ISSUE 1 pairs every load with a MAC (the
 * Cortex-M7 issues both in one cycle), 0 runs the loads back to back (the single-issue M4
 * pipelines consecutive loads: N loads in N + 1 cycles, 2 each otherwise). Same sums either
 * way. Default: 1 where the FPU has double precision (only the M7 among Armv7E-M cores);
 * define it to choose. */
#ifndef NAS_TILE_DUAL_ISSUE
#if defined(__ARM_FP) && (__ARM_FP & 8)
#define NAS_TILE_DUAL_ISSUE 1
#else
#define NAS_TILE_DUAL_ISSUE 0
#endif
#endif

#if defined(__OPTIMIZE__) && NAS_TILE_DUAL_ISSUE
/* acc[c] += a . row c of one tile block over n4 > 0 bytes of a (a multiple of 4). Software
 * pipelined for the M7's dual issue: each SMLAD issues beside the load of a word it needs two
 * steps later, the next word of a is loaded and extended during the last four SMLADs; the last
 * step is peeled so that nothing past a or the block is read. 13 registers and lr. */
static inline void nas_dot_1x4_tile(const int8_t *a, const int32_t *b, int32_t n4,
                                    int32_t *acc) {
    const int8_t *end = a + n4;
    int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    uint32_t xe, xo, w0, w1, w2, w3;
#define NAS_TILE_STEP_HEAD                                                                     \
    "ldr %[w2], [%[b], #8]\n\t"                                                                \
    "smlad %[s0], %[xe], %[w0], %[s0]\n\t"                                                     \
    "ldr %[w3], [%[b], #12]\n\t"                                                               \
    "smlad %[s0], %[xo], %[w1], %[s0]\n\t"                                                     \
    "ldr %[w0], [%[b], #16]\n\t"                                                               \
    "smlad %[s1], %[xe], %[w2], %[s1]\n\t"                                                     \
    "ldr %[w1], [%[b], #20]\n\t"                                                               \
    "smlad %[s1], %[xo], %[w3], %[s1]\n\t"                                                     \
    "ldr %[w2], [%[b], #24]\n\t"                                                               \
    "smlad %[s2], %[xe], %[w0], %[s2]\n\t"                                                     \
    "ldr %[w3], [%[b], #28]\n\t"                                                               \
    "smlad %[s2], %[xo], %[w1], %[s2]\n\t"
    __asm__ volatile("ldr lr, [%[a]], #4\n\t"
                     "ldr %[w0], [%[b], #0]\n\t"
                     "ldr %[w1], [%[b], #4]\n\t"
                     "sxtb16 %[xe], lr\n\t"
                     "sxtb16 %[xo], lr, ror #8\n\t"
                     "cmp %[a], %[end]\n\t"
                     "beq 2f\n\t"
                     "1:\n\t" NAS_TILE_STEP_HEAD "ldr lr, [%[a]], #4\n\t"
                     "smlad %[s3], %[xe], %[w2], %[s3]\n\t"
                     "ldr %[w1], [%[b], #36]\n\t"
                     "smlad %[s3], %[xo], %[w3], %[s3]\n\t"
                     "sxtb16 %[xe], lr\n\t"
                     "ldr %[w0], [%[b], #32]!\n\t"
                     "sxtb16 %[xo], lr, ror #8\n\t"
                     "cmp %[a], %[end]\n\t"
                     "bne 1b\n\t"
                     "2:\n\t" NAS_TILE_STEP_HEAD "smlad %[s3], %[xe], %[w2], %[s3]\n\t"
                     "smlad %[s3], %[xo], %[w3], %[s3]\n\t"
                     : [s0] "+&r"(s0), [s1] "+&r"(s1), [s2] "+&r"(s2), [s3] "+&r"(s3), [a] "+&r"(a),
                       [b] "+&r"(b), [xe] "=&r"(xe), [xo] "=&r"(xo), [w0] "=&r"(w0),
                       [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3)
                     : [end] "r"(end)
                     : "cc", "memory", "lr");
#undef NAS_TILE_STEP_HEAD
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
}
#elif defined(__OPTIMIZE__)
/* The same for single-issue cores (NAS_TILE_DUAL_ISSUE 0): per step the word of a and the
 * tile's first 4 words back to back, the extends, 4 SMLADs, the next 4 words, 4 SMLADs. */
static inline void nas_dot_1x4_tile(const int8_t *a, const int32_t *b, int32_t n4,
                                    int32_t *acc) {
    const int8_t *end = a + n4;
    int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    uint32_t xe, xo, w0, w1, w2, w3;
    __asm__ volatile("1:\n\t"
                     "ldr %[xo], [%[a]], #4\n\t"
                     "ldr %[w0], [%[b], #0]\n\t"
                     "ldr %[w1], [%[b], #4]\n\t"
                     "ldr %[w2], [%[b], #8]\n\t"
                     "ldr %[w3], [%[b], #12]\n\t"
                     "sxtb16 %[xe], %[xo]\n\t"
                     "sxtb16 %[xo], %[xo], ror #8\n\t"
                     "smlad %[s0], %[xe], %[w0], %[s0]\n\t"
                     "smlad %[s0], %[xo], %[w1], %[s0]\n\t"
                     "smlad %[s1], %[xe], %[w2], %[s1]\n\t"
                     "smlad %[s1], %[xo], %[w3], %[s1]\n\t"
                     "ldr %[w0], [%[b], #16]\n\t"
                     "ldr %[w1], [%[b], #20]\n\t"
                     "ldr %[w2], [%[b], #24]\n\t"
                     "ldr %[w3], [%[b], #28]\n\t"
                     "add %[b], %[b], #32\n\t"
                     "smlad %[s2], %[xe], %[w0], %[s2]\n\t"
                     "smlad %[s2], %[xo], %[w1], %[s2]\n\t"
                     "smlad %[s3], %[xe], %[w2], %[s3]\n\t"
                     "smlad %[s3], %[xo], %[w3], %[s3]\n\t"
                     "cmp %[a], %[end]\n\t"
                     "bne 1b\n\t"
                     : [s0] "+&r"(s0), [s1] "+&r"(s1), [s2] "+&r"(s2), [s3] "+&r"(s3), [a] "+&r"(a),
                       [b] "+&r"(b), [xe] "=&r"(xe), [xo] "=&r"(xo), [w0] "=&r"(w0),
                       [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3)
                     : [end] "r"(end)
                     : "cc", "memory");
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
}
#else
/* -O0 (too few registers for the assembly loop): the same sums by intrinsics */
static inline void nas_dot_1x4_tile(const int8_t *a, const int32_t *b, int32_t n4,
                                    int32_t *acc) {
    int32_t i, c;
    for (i = 0; i < n4; i += 4, b += 8) {
        const uint32_t w = nas_load32(a + i);
        const int32_t xe = __sxtb16((int8x4_t)w), xo = nas_sxtb16_odd(w);
        for (c = 0; c < 4; c++) {
            acc[c] = __smlad((int16x2_t)xe, (int16x2_t)b[2 * c], acc[c]);
            acc[c] = __smlad((int16x2_t)xo, (int16x2_t)b[2 * c + 1], acc[c]);
        }
    }
}
#endif

/* Requantizes 4 sums and stores them ys_r apart from y (per-tensor prepared form). In
 * assembly: GCC 12 reloads ys_r from the stack just before each register-offset store, and
 * the M7 then waits 3 cycles per store for the address. */
static inline void nas_store4(int32_t s0, int32_t s1, int32_t s2, int32_t s3, int32_t m,
                              int32_t rh, int32_t sh, int8_t *y, size_t ys_r) {
#if defined(__OPTIMIZE__) /* (-O0's frame pointer leaves too few registers) */
    int8_t *t;
    __asm__ volatile("smmla %[s0], %[s0], %[m], %[rh]\n\t"
                     "smmla %[s1], %[s1], %[m], %[rh]\n\t"
                     "asr %[s0], %[s0], %[sh]\n\t"
                     "smmla %[s2], %[s2], %[m], %[rh]\n\t"
                     "asr %[s1], %[s1], %[sh]\n\t"
                     "smmla %[s3], %[s3], %[m], %[rh]\n\t"
                     "ssat %[s0], #8, %[s0]\n\t"
                     "asr %[s2], %[s2], %[sh]\n\t"
                     "ssat %[s1], #8, %[s1]\n\t"
                     "asr %[s3], %[s3], %[sh]\n\t"
                     "strb %[s0], [%[y]]\n\t"
                     "ssat %[s2], #8, %[s2]\n\t"
                     "strb %[s1], [%[y], %[r]]\n\t"
                     "add %[t], %[y], %[r], lsl #1\n\t"
                     "ssat %[s3], #8, %[s3]\n\t"
                     "strb %[s2], [%[t]]\n\t"
                     "strb %[s3], [%[t], %[r]]\n\t"
                     : [s0] "+&r"(s0), [s1] "+&r"(s1), [s2] "+&r"(s2), [s3] "+&r"(s3),
                       [t] "=&r"(t)
                     : [m] "r"(m), [rh] "r"(rh), [sh] "r"(sh), [y] "r"(y), [r] "r"(ys_r)
                     : "memory");
#else
    y[0] = nas_rq_fast(s0, m, rh, sh);
    y[ys_r] = nas_rq_fast(s1, m, rh, sh);
    y[2 * ys_r] = nas_rq_fast(s2, m, rh, sh);
    y[3 * ys_r] = nas_rq_fast(s3, m, rh, sh);
#endif
}

/* `count` streamed rows a_i = a + i as (n4 bytes each) against one tile block of 4 rows:
 * y[c ys_r + i ys_o] = requant(bias[i] + a_i . tile row c) (bias NULL: 0) for the first g <= 4
 * tile rows, with the prepared per-tensor (s >= 33) requantization, or (pc not NULL) row i's
 * own s >= 33 multiplier pc[i] (per-channel requantization: nas_rq_all_fast). */
NAS_INLINE_ALWAYS void nas_tile_outputs(const int32_t *tile, const int8_t *a, size_t as,
                                        int32_t n4, int32_t count, const int32_t *bias,
                                        const nas_rq_prep *rq, const nas_dyadic *pc, int32_t g,
                                        int8_t *y, size_t ys_r, size_t ys_o) {
    int32_t m = rq->d.m, rh = rq->round_hi, sh = rq->shift_hi;
    int32_t i, c;
    if (g == 4) {
        for (i = count; i > 0; i--, a += as, y += ys_o) {
            const int32_t b0 = bias ? *bias++ : 0;
            int32_t acc[4] = {b0, b0, b0, b0};
            if (pc) {
                m = pc->m;
                rh = (int32_t)1 << (pc->s - 33);
                sh = pc->s - 32;
                pc++;
            }
            nas_dot_1x4_tile(a, tile, n4, acc);
            nas_store4(acc[0], acc[1], acc[2], acc[3], m, rh, sh, y, ys_r);
        }
        return;
    }
    for (i = count; i > 0; i--, a += as, y += ys_o) {
        const int32_t b0 = bias ? *bias++ : 0;
        int32_t acc[4] = {b0, b0, b0, b0};
        if (pc) {
            m = pc->m;
            rh = (int32_t)1 << (pc->s - 33);
            sh = pc->s - 32;
            pc++;
        }
        nas_dot_1x4_tile(a, tile, n4, acc);
        for (c = 0; c < g; c++) {
            y[(size_t)c * ys_r] = nas_rq_fast(acc[c], m, rh, sh);
        }
    }
}
#endif

static inline nas_dyadic nas_rq_get(const nas_requant *rq, int32_t c) {
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

/* quant::kernels::linear with the output element (r, o) stored at y[r*ys_r + o*ys_o]:
 * (out_f, 1) is the Input-Reuse layout [rows, out_f], (1, rows) the Weight-Reuse layout
 * [out_f, rows] (pulp-transformer 4.6.2). Blocks of 4 outputs x 2 rows (portable) or 4 outputs
 * x 1 row (DSP, where 8 accumulators plus the SIMD operands exceed the 13 usable registers). */
static void nas_linear_any_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                              const nas_requant *rq, const nas_linear_dims *d, int8_t *y,
                              size_t ys_r, size_t ys_o, int32_t *tile) {
    const size_t in_f = (size_t)d->in_f;
    const int32_t out_f = d->out_f, rows = d->rows;
    const int32_t o4 = out_f & ~3;
    /* per-tensor requantization prepared once; per channel, once per output column, or read
     * per output where every channel takes the s >= 33 form (pc: the usual case of a
     * searched model, which PTQ quantizes per channel) */
    const nas_rq_prep one = nas_rq_prepare(rq->mult[0]);
    const nas_dyadic *pc = rq->per_channel && nas_rq_all_fast(rq->mult, out_f) ? rq->mult : NULL;
    const int32_t fast = pc || (!rq->per_channel && one.fast);
    int32_t r = 0, o, c;
/* output o's requantization in the fast paths */
#define NAS_RQ_OUT(acc, o)                                                                   \
    (pc ? nas_rq_fast_d((acc), pc[o]) : nas_rq_fast((acc), one.d.m, one.round_hi, one.shift_hi))
#if NAS_USE_DSP
    if (tile && rows >= 4 && in_f > 0 && (in_f & 3) == 0) {
        /* 4 input rows tiled, then every weight row read once for the 4 (the rest below) */
        for (; r + 4 <= rows; r += 4) {
            int8_t *yr = y + (size_t)r * ys_r;
            nas_tile_s8(x + (size_t)r * in_f, in_f, 4, d->in_f, tile);
            /* two call sites: the per-tensor one (pc NULL, a constant there) keeps the
             * per-row multiplier update out of its loop */
            if (pc) {
                nas_tile_outputs(tile, w, in_f, d->in_f, out_f, bias, &one, pc, 4, yr, ys_r,
                                 ys_o);
                continue;
            }
            if (fast) {
                nas_tile_outputs(tile, w, in_f, d->in_f, out_f, bias, &one, NULL, 4, yr, ys_r,
                                 ys_o);
                continue;
            }
            for (o = 0; o < out_f; o++) {
                const nas_rq_prep m = rq->per_channel ? nas_rq_prepare(rq->mult[o]) : one;
                int32_t acc[4] = {bias[o], bias[o], bias[o], bias[o]};
                nas_dot_1x4_tile(w + (size_t)o * in_f, tile, d->in_f, acc);
                for (c = 0; c < 4; c++) {
                    yr[(size_t)c * ys_r + (size_t)o * ys_o] = nas_rq_apply(acc[c], &m);
                }
            }
        }
    }
#else
    (void)tile;
    for (; r + 2 <= rows; r += 2) {
        const int8_t *xr = x + (size_t)r * in_f;
        int8_t *y0 = y + (size_t)r * ys_r, *y1 = y0 + ys_r;
        for (o = 0; o < o4; o += 4) {
            int32_t acc[8];
            for (c = 0; c < 4; c++) {
                acc[2 * c] = acc[2 * c + 1] = bias[o + c];
            }
            nas_dot_2x4_s8(xr, in_f, w + (size_t)o * in_f, in_f, d->in_f, acc);
            if (fast) {
                for (c = 0; c < 4; c++) {
                    y0[(size_t)(o + c) * ys_o] = NAS_RQ_OUT(acc[2 * c], o + c);
                    y1[(size_t)(o + c) * ys_o] = NAS_RQ_OUT(acc[2 * c + 1], o + c);
                }
                continue;
            }
            for (c = 0; c < 4; c++) {
                nas_rq_prep m = rq->per_channel ? nas_rq_prepare(rq->mult[o + c]) : one;
                y0[(size_t)(o + c) * ys_o] = nas_rq_apply(acc[2 * c], &m);
                y1[(size_t)(o + c) * ys_o] = nas_rq_apply(acc[2 * c + 1], &m);
            }
        }
        for (; o < out_f; o++) {
            nas_rq_prep m = rq->per_channel ? nas_rq_prepare(rq->mult[o]) : one;
            const int8_t *wo = w + (size_t)o * in_f;
            y0[(size_t)o * ys_o] = nas_rq_apply(nas_dot_s8(xr, wo, d->in_f, bias[o]), &m);
            y1[(size_t)o * ys_o] =
                nas_rq_apply(nas_dot_s8(xr + in_f, wo, d->in_f, bias[o]), &m);
        }
    }
#endif
#if NAS_USE_DSP
    if (fast && in_f > 0 && (in_f & 3) == 0) {
        /* whole words, fast requantization (per tensor prepared, or per channel): the assembly loop alone (as in
         * nas_rows_any); the rest of each row (out_f % 4 outputs) below */
        for (; r < rows; r++) {
            const int8_t *xr = x + (size_t)r * in_f;
            int8_t *yr = y + (size_t)r * ys_r;
            for (o = 0; o < o4; o += 4) {
                int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]};
                int8_t *yo = yr + (size_t)o * ys_o;
                nas_dot_1x4_s8(xr, w + (size_t)o * in_f, in_f, d->in_f, acc);
                yo[0] = NAS_RQ_OUT(acc[0], o);
                yo[ys_o] = NAS_RQ_OUT(acc[1], o + 1);
                yo[2 * ys_o] = NAS_RQ_OUT(acc[2], o + 2);
                yo[3 * ys_o] = NAS_RQ_OUT(acc[3], o + 3);
            }
            for (; o < out_f; o++) {
                yr[(size_t)o * ys_o] =
                    NAS_RQ_OUT(nas_dot_s8(xr, w + (size_t)o * in_f, d->in_f, bias[o]), o);
            }
        }
        return;
    }
#endif
    for (; r < rows; r++) {
        const int8_t *xr = x + (size_t)r * in_f;
        int8_t *yr = y + (size_t)r * ys_r;
        for (o = 0; o < o4; o += 4) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]};
            nas_dot_1x4_s8(xr, w + (size_t)o * in_f, in_f, d->in_f, acc);
            if (fast) {
                /* one test per block instead of per output (GCC does not unswitch it), the
                 * stores written out so that acc[] stays in registers */
                int8_t *yo = yr + (size_t)o * ys_o;
                yo[0] = NAS_RQ_OUT(acc[0], o);
                yo[ys_o] = NAS_RQ_OUT(acc[1], o + 1);
                yo[2 * ys_o] = NAS_RQ_OUT(acc[2], o + 2);
                yo[3 * ys_o] = NAS_RQ_OUT(acc[3], o + 3);
                continue;
            }
            for (c = 0; c < 4; c++) {
                nas_rq_prep m = rq->per_channel ? nas_rq_prepare(rq->mult[o + c]) : one;
                yr[(size_t)(o + c) * ys_o] = nas_rq_apply(acc[c], &m);
            }
        }
        for (; o < out_f; o++) {
            nas_rq_prep m = rq->per_channel ? nas_rq_prepare(rq->mult[o]) : one;
            yr[(size_t)o * ys_o] =
                nas_rq_apply(nas_dot_s8(xr, w + (size_t)o * in_f, d->in_f, bias[o]), &m);
        }
    }
}
#undef NAS_RQ_OUT

/* quant::kernels::linear (Input-Reuse layout: y [rows, out_f]). */
void nas_linear_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                   const nas_requant *rq, const nas_linear_dims *d, int8_t *y, int32_t *tile) {
    nas_linear_any_s8(x, w, bias, rq, d, y, (size_t)d->out_f, 1, tile);
}

/* quant::kernels::linear, output transposed (Weight-Reuse layout: y [out_f, y_row]). */
void nas_linear_wrl_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                       const nas_requant *rq, const nas_linear_dims *d, int32_t y_row,
                       int8_t *y, int32_t *tile) {
    nas_linear_any_s8(x, w, bias, rq, d, y, 1, (size_t)y_row, tile);
}

/* quant::kernels::matmul */
void nas_matmul_s8(const int8_t *a, const int8_t *b, const nas_matmul_dims *d,
                   nas_dyadic rq, int8_t *y) {
    int32_t bi, i, j, kk, c;
    const size_t k = (size_t)d->k, n = (size_t)d->n;
    const size_t mk = (size_t)d->m * k, kn = k * n, mn = (size_t)d->m * n;
    const int32_t n4 = d->n & ~3, off = d->a_offset;
    const nas_rq_prep m = nas_rq_prepare(rq);
    for (bi = 0; bi < d->batch; bi++) {
        const int8_t *ab = a + bi * mk;
        const int8_t *bb = b + bi * kn;
        int8_t *ob = y + bi * mn;
        for (i = 0; i < d->m; i++) {
            const int8_t *ar = ab + (size_t)i * k;
            int8_t *yr = ob + (size_t)i * n;
            for (j = 0; j < n4; j += 4) {
                int32_t acc[4] = {0, 0, 0, 0};
                if (d->transpose_b) {
                    nas_dot_1x4_s8(ar, bb + (size_t)j * k, k, d->k, acc);
                    if (off) {
                        /* sum (a + off) b = sum a b + off sum b */
                        for (c = 0; c < 4; c++) {
                            acc[c] += off * nas_sum_s8(bb + (size_t)(j + c) * k, d->k);
                        }
                    }
                } else {
                    /* 4 adjacent columns of b: one a element serves 4 contiguous b bytes */
                    for (kk = 0; kk < d->k; kk++) {
                        const int8_t *br = bb + (size_t)kk * n + j;
                        int32_t av = ar[kk] + off;
                        acc[0] += av * br[0];
                        acc[1] += av * br[1];
                        acc[2] += av * br[2];
                        acc[3] += av * br[3];
                    }
                }
                for (c = 0; c < 4; c++) {
                    yr[j + c] = nas_rq_apply(acc[c], &m);
                }
            }
            for (; j < d->n; j++) {
                int32_t acc = 0;
                if (d->transpose_b) {
                    acc = nas_dot_s8(ar, bb + (size_t)j * k, d->k, 0);
                    if (off) {
                        acc += off * nas_sum_s8(bb + (size_t)j * k, d->k);
                    }
                } else {
                    for (kk = 0; kk < d->k; kk++) {
                        acc += ((int32_t)ar[kk] + off) * (int32_t)bb[(size_t)kk * n + j];
                    }
                }
                yr[j] = nas_rq_apply(acc, &m);
            }
        }
    }
}

/* quant::AddParams::eval */
void nas_add_s8(const int8_t *a, const int8_t *b, int32_t n, const nas_add_params *p,
                int8_t *y) {
    int32_t i;
    /* the rounding constant hoisted: s = 0 adds 0 and shifts by 0 (same values) */
    const int32_t ma = p->ma, mb = p->mb, s = p->s;
    const int32_t round = s == 0 ? 0 : (int32_t)1 << (s - 1);
    for (i = 0; i < n; i++) {
        int32_t acc = (int32_t)a[i] * ma + (int32_t)b[i] * mb;
        y[i] = nas_sat8_32(nas_asr32(acc + round, s));
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

/* Division by a divisor fixed over a row (softmax's sum, LayerNorm's std) as a multiply:
 * floor(n / d) for 0 <= n < 2^31 and 2 <= d < 2^31 is floor(n m / 2^(31 + l)) with
 * l = ceil(log2 d) and m = ceil(2^(31 + l) / d) < 2^32 (Granlund & Montgomery, "Division by
 * invariant integers using multiplication", 1994, Thm 4.2 with N = 31: exact for every such n),
 * computed as the high word of n m shifted right by l - 1. Preparing m costs two 32-bit
 * divisions per row and buys a multiply instead of a division per element (SDIV 7 cycles on
 * the M7, DIV 19 on the CV32E40P); rows shorter than NAS_RECIP_MIN_LEN keep the division
 * (there the preparation's two divisions cannot pay off; the bound itself is not tuned). */
#define NAS_RECIP_MIN_LEN 8
typedef struct {
    uint32_t m;
    int32_t sh;
} nas_recip;

/* floor(2^63 / v) for 2^31 < v < 2^32, by long division in base 2^16 (Knuth's algorithm D:
 * each quotient digit estimated from the divisor's high digit with one 32-bit division, then
 * corrected at most twice) instead of a software 64-bit division. */
static uint32_t nas_div_2p63(uint32_t v) {
    const uint32_t b = 0x10000u, v1 = v >> 16, v0 = v & 0xffffu;
    uint32_t q1, q0, r, rem;
    /* digit 1: (2^15 b) / v1; the dividend's next digit is 0 */
    q1 = 0x80000000u / v1;
    r = 0x80000000u - q1 * v1;
    while (q1 >= b || q1 * v0 > (r << 16)) {
        q1--;
        r += v1;
        if (r >= b) {
            break;
        }
    }
    /* partial remainder 2^47 - q1 v (< v: exact in 32-bit wrapping arithmetic) */
    rem = 0u - q1 * v;
    /* digit 0: rem b / v, the dividend's last digit 0 */
    q0 = rem / v1;
    r = rem - q0 * v1;
    while (q0 >= b || q0 * v0 > (r << 16)) {
        q0--;
        r += v1;
        if (r >= b) {
            break;
        }
    }
    return (q1 << 16) | q0;
}

static nas_recip nas_recip_prepare(uint32_t d) {
    nas_recip r;
    int32_t l = 1;
#if defined(__ARM_FEATURE_CLZ) && __ARM_FEATURE_CLZ
    /* l = ceil(log2 d) clamped to [1, 31] by one CLZ (d > 1) instead of up to 30 steps */
    l = 32 - __builtin_clz(d - 1);
    l = l < 1 ? 1 : (l > 31 ? 31 : l);
#else
    while (l < 31 && ((uint32_t)1 << l) < d) {
        l++;
    }
#endif
    r.sh = l - 1;
    /* d = 2^l: m = 2^31 exactly; else 2^(31+l) / d = 2^63 / (d 2^(32-l)) is not an integer,
     * so its ceiling is its floor + 1 */
    r.m = (d & (d - 1)) == 0 ? 0x80000000u : nas_div_2p63(d << (32 - l)) + 1;
    return r;
}

static inline uint32_t nas_recip_div(uint32_t n, nas_recip r) {
    return (uint32_t)(((uint64_t)n * r.m) >> 32) >> r.sh;
}

/* nas_div_round(n, d) for the d of r: (|n| + d / 2) / d with n's sign (|n| + d / 2 < 2^31),
 * without a branch on the sign (about half the values of a row are negative: a data-dependent
 * branch would cost more than the division saved). */
static inline int32_t nas_recip_div_round(int32_t n, int32_t half, nas_recip r) {
    const uint32_t s = (uint32_t)-(int32_t)(n < 0); /* all ones when negative */
    const uint32_t a = ((uint32_t)n ^ s) - s;       /* |n| */
    return (int32_t)((nas_recip_div(a + (uint32_t)half, r) ^ s) - s);
}

/* d_i = x_i - max, shifted into the internal scale (quant::ISoftmax::eval_row). */
static int32_t nas_softmax_exp(const nas_softmax_params *p, int32_t xi, int32_t m) {
    int32_t d = xi - m;
    d = p->j >= 0 ? d * ((int32_t)1 << p->j) : nas_asr32(d, -p->j);
    return nas_iexp_eval(&p->exp, d);
}

/* y_i for i in [from, n) of a table-form softmax row (nas_softmax_row): through the row's
 * reciprocal r, or by division when r is NULL. */
static inline void nas_softmax_lut_range(const int8_t *xr, const int32_t *lut, int32_t m,
                                         int32_t unit, int32_t half, int32_t sum,
                                         const nas_recip *r, int32_t from, int32_t n,
                                         uint8_t *yr, int32_t flip) {
    int32_t i;
    if (r) {
        for (i = from; i < n; i++) {
            uint32_t v = nas_recip_div((uint32_t)(lut[m - xr[i]] * unit + half), *r);
            yr[i] = (uint8_t)((v > 255 ? 255 : v) ^ (uint32_t)flip);
        }
        return;
    }
    for (i = from; i < n; i++) {
        int32_t v = (lut[m - xr[i]] * unit + half) / sum;
        yr[i] = (uint8_t)((v > 255 ? 255 : v) ^ flip);
    }
}

/* The probability byte of every difference d = max - x_i in [0, dmax] of a table-form softmax
 * row, as nas_softmax_lut_range computes it per element (through the row's reciprocal r):
 * when the row's values span fewer differences than it has elements, each element is then
 * one byte lookup instead of a table load, a multiply-add, a 64-bit multiply and a clamp.
 * NAS_SOFTMAX_PTAB bytes on the stack. */
#define NAS_SOFTMAX_PTAB 256
static void nas_softmax_prob_table(const int32_t *lut, int32_t dmax, int32_t unit, int32_t half,
                                   nas_recip r, int32_t flip, uint8_t *ptab) {
    int32_t d;
    for (d = 0; d <= dmax; d++) {
        const uint32_t v = nas_recip_div((uint32_t)(lut[d] * unit + half), r);
        ptab[d] = (uint8_t)((v > 255 ? 255 : v) ^ (uint32_t)flip);
    }
}

/* Rows shorter than this never take the probability table, nor track the range it needs:
 * the DSP loops track it almost free (half an instruction an element), the portable one pays
 * about two cycles an element on the CV32E40P, which only long rows win back. */
#if NAS_USE_DSP
#define NAS_SOFTMAX_PTAB_MIN_LEN 32
#else
#define NAS_SOFTMAX_PTAB_MIN_LEN 512
#endif

/* Whether a row of n elements whose differences span [0, dmax] takes the probability table:
 * building an entry costs about what computing an element directly does, a lookup a third to
 * a half (the Cortex-M4's byte loads do not pair). */
static inline int nas_softmax_tabled(int32_t dmax, int32_t n) {
    return n >= NAS_SOFTMAX_PTAB_MIN_LEN && dmax < (n >> 2);
}

#if NAS_USE_DSP
/* The table form of nas_softmax_row on Cortex-M for rows of n >= NAS_RECIP_MIN_LEN, a word of
 * 4 elements at a time: the max by SSUB8 + SEL (each lane's GE flag says x >= max, SEL keeps
 * those lanes), the 4 table indices m - x_i by one USUB8 (m >= x_i, so each lane's byte
 * difference is m - x_i in 0..255), the 4 probabilities saturated by USAT and stored as one
 * word. The same values, sum and divisions as the scalar loops; in place is fine (a word is
 * read before the word at the same address is written). */
static void nas_softmax_row_lut_dsp(const int8_t *xr, const nas_softmax_params *p,
                                    uint8_t *yr, int32_t flip) {
    const int32_t *lut = p->lut;
    const int32_t n = p->len, n4 = n & ~3, unit = (int32_t)256 << p->out_shift;
    uint32_t mx = nas_load32(xr), mn = mx, t, mm;
    int32_t i, m, lo, sum = 0, half;
    if (n >= NAS_SOFTMAX_PTAB_MIN_LEN) {
        for (i = 4; i < n4; i += 4) {
            const uint32_t w = nas_load32(xr + i);
            /* GE per lane where w >= max (SEL keeps w there), then where min >= w */
            __asm__("ssub8 %[t], %[w], %[m]\n\tsel %[m], %[w], %[m]\n\t"
                    "ssub8 %[t], %[n], %[w]\n\tsel %[n], %[w], %[n]"
                    : [t] "=&r"(t), [m] "+r"(mx), [n] "+r"(mn)
                    : [w] "r"(w)
                    : "cc");
        }
    } else {
        /* (the min stays the first word's: unused, the row takes no table) */
        for (i = 4; i < n4; i += 4) {
            __asm__("ssub8 %[t], %[w], %[m]\n\tsel %[m], %[w], %[m]"
                    : [t] "=&r"(t), [m] "+r"(mx)
                    : [w] "r"(nas_load32(xr + i))
                    : "cc");
        }
    }
    m = (int8_t)mx;
    lo = (int8_t)mn;
    for (i = 8; i < 32; i += 8) {
        const int32_t v = (int8_t)(mx >> i), u = (int8_t)(mn >> i);
        m = v > m ? v : m;
        lo = u < lo ? u : lo;
    }
    for (i = n4; i < n; i++) {
        m = xr[i] > m ? xr[i] : m;
        lo = xr[i] < lo ? xr[i] : lo;
    }
    mm = (uint32_t)(uint8_t)m * 0x01010101u;
    for (i = 0; i < n4; i += 4) {
        const uint32_t d = __usub8(mm, nas_load32(xr + i));
        sum += lut[d & 0xff] + lut[(d >> 8) & 0xff] + lut[(d >> 16) & 0xff] + lut[d >> 24];
    }
    for (i = n4; i < n; i++) {
        sum += lut[m - xr[i]];
    }
    half = sum / 2;
    if (sum > 1 && nas_softmax_tabled(m - lo, n)) {
        uint8_t ptab[NAS_SOFTMAX_PTAB];
        nas_softmax_prob_table(lut, m - lo, unit, half, nas_recip_prepare((uint32_t)sum), flip,
                               ptab);
        for (i = 0; i < n4; i += 4) {
            const uint32_t d = __usub8(mm, nas_load32(xr + i));
            const uint32_t y = (uint32_t)ptab[d & 0xff] | (uint32_t)ptab[(d >> 8) & 0xff] << 8 |
                               (uint32_t)ptab[(d >> 16) & 0xff] << 16 |
                               (uint32_t)ptab[d >> 24] << 24;
            memcpy(yr + i, &y, 4);
        }
        for (i = n4; i < n; i++) {
            yr[i] = ptab[m - xr[i]];
        }
        return;
    }
    if (sum > 1) {
        const nas_recip r = nas_recip_prepare((uint32_t)sum);
        const uint32_t flip4 = (uint32_t)flip * 0x01010101u;
        for (i = 0; i < n4; i += 4) {
            const uint32_t d = __usub8(mm, nas_load32(xr + i));
#define NAS_SOFTMAX_P(k)                                                                       \
    ((uint32_t)__usat((int32_t)nas_recip_div(                                                  \
                          (uint32_t)(lut[(d >> (8 * (k))) & 0xff] * unit + half), r),         \
                      8)                                                                       \
     << (8 * (k)))
            const uint32_t w =
                NAS_SOFTMAX_P(0) | NAS_SOFTMAX_P(1) | NAS_SOFTMAX_P(2) | NAS_SOFTMAX_P(3);
#undef NAS_SOFTMAX_P
            const uint32_t y = w ^ flip4;
            memcpy(yr + i, &y, 4); /* unaligned word stores are legal on M4/M7 */
        }
        nas_softmax_lut_range(xr, lut, m, unit, half, sum, &r, n4, n, yr, flip);
        return;
    }
    nas_softmax_lut_range(xr, lut, m, unit, half, sum, NULL, 0, n, yr, flip);
}
#endif

/* quant::ISoftmax::eval_row of one row: the uint8 probability p_i = min(255, (e_i 2^(8 + o) +
 * sum / 2) / sum) (o = p->out_shift), stored as the byte p_i ^ flip (flip 0x80: the int8 p_i - 128 of the graph's
 * softmax tensor; 0: the raw uint8 the fused attention multiplies with). With p->lut
 * (TinyFormer's exponent table), e_i is lut[max - x_i]: the table holds the i-exp of every
 * possible int8 difference, so the values, their sum and the division are the interpreter's.
 * y may be x (each x_i is read before y_i is written). */
static void nas_softmax_row(const int8_t *xr, const nas_softmax_params *p, uint8_t *yr,
                            int32_t flip) {
    int32_t i, n = p->len, m = xr[0], sum = 0, half;
    const int32_t unit = (int32_t)256 << p->out_shift; /* e_i unit <= 2^30 (quant checks) */
#if NAS_USE_DSP
    if (p->lut && n >= NAS_RECIP_MIN_LEN) {
        nas_softmax_row_lut_dsp(xr, p, yr, flip);
        return;
    }
#endif
    for (i = 1; i < n; i++) {
        m = xr[i] > m ? xr[i] : m;
    }
    if (p->lut) {
        const int32_t *lut = p->lut; /* e_i = lut[m - x_i], m - x_i in 0..255 */
        int32_t dmax = 255; /* (no table below NAS_SOFTMAX_PTAB_MIN_LEN: not tracked) */
        if (n >= NAS_SOFTMAX_PTAB_MIN_LEN) {
            dmax = 0;
            for (i = 0; i < n; i++) {
                const int32_t d = m - xr[i];
                sum += lut[d];
                dmax = d > dmax ? d : dmax;
            }
        } else {
            for (i = 0; i < n; i++) {
                sum += lut[m - xr[i]];
            }
        }
        half = sum / 2;
        /* one loop per case (table or i-exp, reciprocal or division): no branch per element */
        if (n >= NAS_RECIP_MIN_LEN && sum > 1 && nas_softmax_tabled(dmax, n)) {
            uint8_t ptab[NAS_SOFTMAX_PTAB];
            nas_softmax_prob_table(lut, dmax, unit, half, nas_recip_prepare((uint32_t)sum), flip,
                                   ptab);
            for (i = 0; i < n; i++) {
                yr[i] = ptab[m - xr[i]];
            }
            return;
        }
        if (n >= NAS_RECIP_MIN_LEN && sum > 1) {
            const nas_recip r = nas_recip_prepare((uint32_t)sum);
            nas_softmax_lut_range(xr, lut, m, unit, half, sum, &r, 0, n, yr, flip);
            return;
        }
        nas_softmax_lut_range(xr, lut, m, unit, half, sum, NULL, 0, n, yr, flip);
        return;
    }
    for (i = 0; i < n; i++) {
        sum += nas_softmax_exp(p, xr[i], m);
    }
    half = sum / 2;
    if (n >= NAS_RECIP_MIN_LEN && sum > 1) {
        const nas_recip r = nas_recip_prepare((uint32_t)sum);
        for (i = 0; i < n; i++) {
            /* recompute e_i instead of storing an int32 row (identical value) */
            uint32_t v =
                nas_recip_div((uint32_t)(nas_softmax_exp(p, xr[i], m) * unit + half), r);
            yr[i] = (uint8_t)((v > 255 ? 255 : v) ^ (uint32_t)flip);
        }
        return;
    }
    for (i = 0; i < n; i++) {
        int32_t v = (nas_softmax_exp(p, xr[i], m) * unit + half) / sum;
        yr[i] = (uint8_t)((v > 255 ? 255 : v) ^ flip);
    }
}

void nas_softmax_s8(const int8_t *x, int32_t rows, const nas_softmax_params *p, int8_t *y) {
    int32_t r;
    for (r = 0; r < rows; r++) {
        /* p - 128 as int8 is the byte p ^ 0x80 (character types may alias) */
        nas_softmax_row(x + (size_t)r * (size_t)p->len,
                        p, (uint8_t *)(y + (size_t)r * (size_t)p->len), 0x80);
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

/* normalize_row, second half: element i of the normalised row (x_norm * 2^G); r is std's
 * reciprocal when recip (nas_recip_prepare), else unused. */
static int32_t nas_norm_value(const int8_t *x, int32_t i, const nas_layernorm_params *p,
                              int32_t mu, int32_t std, int32_t recip, nas_recip r) {
    int32_t c = (int32_t)x[i] * 16 - mu;
    int32_t n = c * ((int32_t)1 << (p->g - p->r / 2));
    return recip ? nas_recip_div_round(n, std / 2, r) : nas_div_round(n, std);
}

/* Whether a row of len values divides by std through its reciprocal (see nas_recip): only
 * where a division is slow next to a multiply (RV32: the CV32E40P's DIV takes 19 cycles). On
 * Cortex-M (SDIV 2-12 cycles) the reciprocal's extra instructions in this register-starved
 * loop cost as much as the division on the M7 and more on the M4 (modelled: LayerNorm 59.0 /
 * 90.7 cycles per element with it, 59.1 / 85.4 without; RV32 93.3 against 104.1). */
#define NAS_NORM_RECIP (!NAS_USE_DSP)
static int32_t nas_norm_recip(int32_t len, int32_t std, nas_recip *r) {
    if (!NAS_NORM_RECIP || len < NAS_RECIP_MIN_LEN || std < 2) {
        return 0;
    }
    *r = nas_recip_prepare((uint32_t)std);
    return 1;
}

/* quant::IntLayerNorm::eval_row_ibert */
void nas_layernorm_s8(const int8_t *x, int32_t rows, const nas_layernorm_params *p, int8_t *y) {
    int32_t r, i, mu, std, recip, lim = (int32_t)1 << (p->g + 8);
    const nas_rq_prep q = nas_rq_prepare(p->requant);
    nas_recip inv = {0, 0};
    for (r = 0; r < rows; r++) {
        const int8_t *xr = x + (size_t)r * (size_t)p->len;
        int8_t *yr = y + (size_t)r * (size_t)p->len;
        nas_norm_stats(xr, p, &mu, &std);
        recip = nas_norm_recip(p->len, std, &inv);
        for (i = 0; i < p->len; i++) {
            int32_t n = nas_norm_value(xr, i, p, mu, std, recip, inv);
            n = n < -lim ? -lim : (n > lim ? lim : n);
            yr[i] = nas_rq_apply(n * p->gamma[i] + p->beta[i], &q);
        }
    }
}

static int32_t nas_sat16(int32_t v) {
    return v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
}

/* quant::IntLayerNorm::eval_row_scaled */
void nas_scaled_layernorm_s8(const int8_t *x, int32_t rows, const nas_layernorm_params *p,
                             int8_t *y) {
    int32_t r, i, mu, std, recip;
    const nas_rq_prep q = nas_rq_prepare(p->requant);
    nas_recip inv = {0, 0};
    for (r = 0; r < rows; r++) {
        const int8_t *xr = x + (size_t)r * (size_t)p->len;
        int8_t *yr = y + (size_t)r * (size_t)p->len;
        nas_norm_stats(xr, p, &mu, &std);
        recip = nas_norm_recip(p->len, std, &inv);
        for (i = 0; i < p->len; i++) {
            int32_t n = nas_sat16(nas_norm_value(xr, i, p, mu, std, recip, inv));
            int32_t v = nas_sat16(n * p->gamma[i] + p->beta[i]);
            yr[i] = nas_rq_apply(v, &q);
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
    int32_t i, j, ax, inner, run = 1, outer = 1, off = 0;
    if (rank < 1 || rank > NAS_MAX_RANK) {
        return;
    }
    in_strides[rank - 1] = 1;
    for (i = rank - 2; i >= 0; i--) {
        in_strides[i] = in_strides[i + 1] * shape[i + 1];
    }
    /* trailing axes that keep their place move together: runs of `run` contiguous bytes (a
     * head split [S, H, P] -> [H, S, P] copies rows of P bytes instead of single bytes) */
    inner = rank;
    while (inner > 1 && perm[inner - 1] == inner - 1) {
        run *= shape[inner - 1];
        inner--;
    }
    for (i = 0; i < inner; i++) {
        oshape[i] = shape[perm[i]];
        ostr[i] = in_strides[perm[i]];
        idx[i] = 0;
    }
    for (i = 0; i + 1 < inner; i++) {
        outer *= oshape[i];
    }
    /* the innermost moved axis as a plain loop, the others as an odometer with the source
     * offset kept up to date (no per-element index arithmetic) */
    for (i = 0; i < outer; i++) {
        const int8_t *src = x + off;
        const int32_t n = oshape[inner - 1], step = ostr[inner - 1];
        if (run == 1) {
            for (j = 0; j < n; j++) {
                y[j] = src[(size_t)j * (size_t)step];
            }
        } else {
            for (j = 0; j < n; j++) {
                memcpy(y + (size_t)j * (size_t)run, src + (size_t)j * (size_t)step, (size_t)run);
            }
        }
        y += (size_t)n * (size_t)run;
        for (ax = inner - 2; ax >= 0; ax--) {
            off += ostr[ax];
            if (++idx[ax] < oshape[ax]) {
                break;
            }
            off -= oshape[ax] * ostr[ax];
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

/* The taps [k0, k1) of a k-tap window starting at input index i0 = o stride - pad that lie
 * inside an input of n (padding contributes 0): each window is clipped once per pixel. */
typedef struct {
    int32_t i0, k0, k1;
} nas_span;

static inline nas_span nas_window_span(int32_t o, int32_t stride, int32_t pad, int32_t n,
                                       int32_t k) {
    nas_span s;
    s.i0 = o * stride - pad;
    s.k0 = s.i0 < 0 ? -s.i0 : 0;
    s.k1 = n - s.i0 < k ? n - s.i0 : k;
    return s;
}

#if defined(__GNUC__)
#define NAS_NOINLINE static __attribute__((noinline))
#define NAS_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define NAS_NOINLINE static
#define NAS_ALWAYS_INLINE static inline
#endif

/* Largest window (kh kw ic bytes) nas_conv2d_s8 gathers, as int16 on the stack (128 bytes):
 * a 3 x 3 window of up to 7 channels. The cost model prices such layers by the same limit
 * (cost::ops::CONV_GATHER_MAX_BYTES). */
#define NAS_CONV_PATCH 64

/* A gathered window, one int16 per byte. On DSP cores nas_conv_gather then pairs each whole
 * word's halfwords as SXTB16 splits a word of weights (bytes 0 and 2, then 1 and 3): words
 * 2j and 2j + 1 hold the window's bytes 4j..4j+3 ready for SMLAD. */
typedef union {
    int32_t w[NAS_CONV_PATCH / 2];
    int16_t h[NAS_CONV_PATCH];
} nas_conv_patch;

/* The kh rows of row bytes each (xrow bytes apart in the input) of a window inside the input,
 * in order (int16 stores: GCC leaves the byte loop a loop, not memcpy calls), then on DSP
 * cores the pairing of the first nw words' halfwords (PKHBT / PKHTB). */
static inline void nas_conv_gather(const int8_t *xr, size_t xrow, int32_t kh, size_t row,
                                   size_t nw, nas_conv_patch *p) {
    int16_t *h = p->h;
    size_t b;
    int32_t ky;
    for (ky = 0; ky < kh; ky++, xr += xrow) {
        for (b = 0; b < row; b++) {
            *h++ = xr[b];
        }
    }
#if NAS_USE_DSP
    for (b = 0; b < nw; b++) {
        const uint32_t lo = (uint32_t)p->w[2 * b], hi = (uint32_t)p->w[2 * b + 1];
        p->w[2 * b] = (int32_t)((lo & 0xFFFFu) | (hi << 16));
        p->w[2 * b + 1] = (int32_t)((lo >> 16) | (hi & 0xFFFF0000u));
    }
#else
    (void)nw;
#endif
}

/* Output o's requantization: per channel read where all take the s >= 33 form (pc). */
#define NAS_CONV_RQ(acc, o)                                                                   \
    (pc ? nas_rq_fast_d((acc), pc[o]) : nas_requantize((acc), nas_rq_get(rq, o)))

#if NAS_USE_DSP
/* The oc outputs of one pixel from a gathered window of 9 bytes (a one-channel 3 x 3 window: a
 * key-word or grayscale image's stem): its two words and last byte stay in registers for every
 * block of 4 channels, whose rows are constant offsets apart (no loop inside a block). */
NAS_ALWAYS_INLINE void nas_conv2d_window9_outputs(const nas_conv_patch *p, const int8_t *w,
                                                  const int32_t *bias, const nas_requant *rq,
                                                  const nas_dyadic *pc, int32_t oc,
                                                  int8_t *yp) {
    const int32_t x02 = p->w[0], x13 = p->w[1], y02 = p->w[2], y13 = p->w[3], x8 = p->h[8];
    int32_t o;
#define NAS_CONV_ROW9(acc, r)                                                                  \
    nas_mac4(y02, y13, nas_load32((r) + 4), nas_mac4(x02, x13, nas_load32(r), (acc))) +         \
        x8 * (r)[8]
    for (o = 0; o + 4 <= oc; o += 4) {
        const int8_t *b0 = w + (size_t)o * 9;
        yp[o] = NAS_CONV_RQ(NAS_CONV_ROW9(bias[o], b0), o);
        yp[o + 1] = NAS_CONV_RQ(NAS_CONV_ROW9(bias[o + 1], b0 + 9), o + 1);
        yp[o + 2] = NAS_CONV_RQ(NAS_CONV_ROW9(bias[o + 2], b0 + 18), o + 2);
        yp[o + 3] = NAS_CONV_RQ(NAS_CONV_ROW9(bias[o + 3], b0 + 27), o + 3);
    }
    for (; o < oc; o++) {
        yp[o] = NAS_CONV_RQ(NAS_CONV_ROW9(bias[o], w + (size_t)o * 9), o);
    }
#undef NAS_CONV_ROW9
}
#endif

/* The oc outputs of one pixel from its gathered window (ks bytes): every channel's weights
 * are ks contiguous bytes, so one dot product per block of 4 channels instead of one per
 * kernel row. On DSP cores intrinsics, not nas_dot_1x4_dsp's assembly, whose 12 registers
 * leave the M4 none for this loop's state. Out of line: inlined into nas_conv2d_gathered's
 * loop, it costs the modelled M4 about 17 cycles an output more. */
NAS_NOINLINE void nas_conv2d_window_outputs(const nas_conv_patch *p, size_t ks, const int8_t *w,
                                            const int32_t *bias, const nas_requant *rq,
                                            const nas_dyadic *pc, int32_t oc, int8_t *yp) {
    int32_t o;
    size_t k;
#if NAS_USE_DSP
    const size_t nw = ks >> 2, k4 = nw << 2;
#else
    const size_t k4 = 0;
#endif
    for (o = 0; o + 4 <= oc; o += 4) {
        /* rows 0 and 2, rows 1 and 3 ks bytes after them */
        const int8_t *b0 = w + (size_t)o * ks, *b2 = b0 + 2 * ks;
        int32_t a0 = bias[o], a1 = bias[o + 1], a2 = bias[o + 2], a3 = bias[o + 3];
#if NAS_USE_DSP
        size_t j;
        for (j = 0; j < nw; j++, b0 += 4, b2 += 4) {
            const int32_t x02 = p->w[2 * j], x13 = p->w[2 * j + 1];
            a0 = nas_mac4(x02, x13, nas_load32(b0), a0);
            a1 = nas_mac4(x02, x13, nas_load32(b0 + ks), a1);
            a2 = nas_mac4(x02, x13, nas_load32(b2), a2);
            a3 = nas_mac4(x02, x13, nas_load32(b2 + ks), a3);
        }
#endif
        for (k = k4; k < ks; k++, b0++, b2++) {
            const int32_t xk = p->h[k];
            a0 += xk * b0[0];
            a1 += xk * b0[ks];
            a2 += xk * b2[0];
            a3 += xk * b2[ks];
        }
        yp[o] = NAS_CONV_RQ(a0, o);
        yp[o + 1] = NAS_CONV_RQ(a1, o + 1);
        yp[o + 2] = NAS_CONV_RQ(a2, o + 2);
        yp[o + 3] = NAS_CONV_RQ(a3, o + 3);
    }
    for (; o < oc; o++) {
        const int8_t *b0 = w + (size_t)o * ks;
        int32_t acc = bias[o];
#if NAS_USE_DSP
        size_t j;
        for (j = 0; j < nw; j++, b0 += 4) {
            acc = nas_mac4(p->w[2 * j], p->w[2 * j + 1], nas_load32(b0), acc);
        }
#endif
        for (k = k4; k < ks; k++, b0++) {
            acc += p->h[k] * b0[0];
        }
        yp[o] = NAS_CONV_RQ(acc, o);
    }
}
#undef NAS_CONV_RQ

/* One output pixel of nas_conv2d_s8 by kernel rows: the window [ky0, ky1) x [kx0, kx1) of the
 * kernel lies inside the input (padding contributes 0). Blocks of 4 output channels share each
 * loaded input tap (the 1x4 dot product of Linear, its 4 weight rows kh kw ic bytes apart: the
 * SIMD path on Cortex-M), the remaining channels one at a time. */
NAS_ALWAYS_INLINE void nas_conv2d_pixel_rows(const int8_t *x, const nas_hwc *in,
                                             const int8_t *w, const int32_t *bias,
                                             const nas_requant *rq, int32_t kw, size_t ks,
                                             int32_t oc, int32_t iy0, int32_t ky0, int32_t ky1,
                                             int32_t ix0, int32_t kx0, int32_t kx1,
                                             int8_t *yp) {
    const int32_t ic = in->c;
    int32_t o, c, ky;
    for (o = 0; o + 4 <= oc; o += 4) {
        int32_t acc[4];
        acc[0] = bias[o];
        acc[1] = bias[o + 1];
        acc[2] = bias[o + 2];
        acc[3] = bias[o + 3];
        /* a kernel row's in-range taps are contiguous in the HWC input and in the weights: one
         * dot product per row ((kx1 - kx0) ic bytes), not one per tap */
        for (ky = ky0; ky < ky1; ky++) {
            nas_dot_1x4_s8(
                x + ((size_t)(iy0 + ky) * (size_t)in->w + (size_t)(ix0 + kx0)) * (size_t)ic,
                w + (size_t)o * ks + ((size_t)ky * (size_t)kw + (size_t)kx0) * (size_t)ic, ks,
                (kx1 - kx0) * ic, acc);
        }
        for (c = 0; c < 4; c++) {
            yp[o + c] = nas_requantize(acc[c], nas_rq_get(rq, o + c));
        }
    }
    for (; o < oc; o++) {
        int32_t acc = bias[o];
        for (ky = ky0; ky < ky1; ky++) {
            acc = nas_dot_s8(
                x + ((size_t)(iy0 + ky) * (size_t)in->w + (size_t)(ix0 + kx0)) * (size_t)ic,
                w + (size_t)o * ks + ((size_t)ky * (size_t)kw + (size_t)kx0) * (size_t)ic,
                (kx1 - kx0) * ic, acc);
        }
        yp[o] = nas_requantize(acc, nas_rq_get(rq, o));
    }
}

/* nas_conv2d_s8 of a layer whose kernel rows are not whole words (kw ic bytes: a one-channel
 * stem's 3) and whose window fits NAS_CONV_PATCH: a dot product per row has little to do, so
 * each window inside the input is gathered into one operand (nas_conv_gather,
 * nas_conv2d_window_outputs); windows clipped at the border go by rows. Its own loop nest,
 * out of line: inlined into nas_conv2d_s8, its registers cost the per-row loop of the layers
 * that never gather 2-5 % (modelled M4 / M7). */
NAS_NOINLINE void nas_conv2d_gathered(const int8_t *x, const nas_hwc *in, const int8_t *w,
                                      const int32_t *bias, const nas_requant *rq,
                                      const nas_window *win, const nas_hwc *out, int8_t *y) {
    int32_t oy, ox;
    const int32_t kh = win->k[0], kw = win->k[1], ic = in->c, oc = out->c;
    const size_t ks = (size_t)kh * (size_t)kw * (size_t)ic, row = (size_t)kw * (size_t)ic;
    const nas_dyadic *pc = rq->per_channel && nas_rq_all_fast(rq->mult, oc) ? rq->mult : NULL;
    nas_conv_patch patch;
    for (oy = 0; oy < out->h; oy++) {
        const nas_span sy = nas_window_span(oy, win->stride[0], win->pad[0], in->h, kh);
        const int32_t iy0 = sy.i0, ky0 = sy.k0, ky1 = sy.k1;
        for (ox = 0; ox < out->w; ox++) {
            const nas_span sx = nas_window_span(ox, win->stride[1], win->pad[1], in->w, kw);
            const int32_t ix0 = sx.i0, kx0 = sx.k0, kx1 = sx.k1;
            int8_t *yp = y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)oc;
            if (ky1 - ky0 == kh && kx1 - kx0 == kw) {
                nas_conv_gather(x + ((size_t)iy0 * (size_t)in->w + (size_t)ix0) * (size_t)ic,
                                (size_t)in->w * (size_t)ic, kh, row, ks >> 2, &patch);
#if NAS_USE_DSP
                if (ks == 9) {
                    nas_conv2d_window9_outputs(&patch, w, bias, rq, pc, oc, yp);
                    continue;
                }
#endif
                nas_conv2d_window_outputs(&patch, ks, w, bias, rq, pc, oc, yp);
            } else {
                nas_conv2d_pixel_rows(x, in, w, bias, rq, kw, ks, oc, iy0, ky0, ky1, ix0, kx0,
                                      kx1, yp);
            }
        }
    }
}

/* quant::kernels::conv2d, pixel by pixel: the window is clipped to the input once per pixel
 * (nas_conv2d_pixel_rows), or gathered (nas_conv2d_gathered). */
void nas_conv2d_s8(const int8_t *x, const nas_hwc *in, const int8_t *w, const int32_t *bias,
                   const nas_requant *rq, const nas_window *win, const nas_hwc *out,
                   int8_t *y) {
    int32_t oy, ox;
    const int32_t kh = win->k[0], kw = win->k[1], ic = in->c, oc = out->c;
    const size_t ks = (size_t)kh * (size_t)kw * (size_t)ic; /* weight bytes per channel */
    if (ks <= NAS_CONV_PATCH && (((size_t)kw * (size_t)ic) & 3) != 0) {
        nas_conv2d_gathered(x, in, w, bias, rq, win, out, y);
        return;
    }
    for (oy = 0; oy < out->h; oy++) {
        const nas_span sy = nas_window_span(oy, win->stride[0], win->pad[0], in->h, kh);
        const int32_t iy0 = sy.i0, ky0 = sy.k0, ky1 = sy.k1;
        for (ox = 0; ox < out->w; ox++) {
            const nas_span sx = nas_window_span(ox, win->stride[1], win->pad[1], in->w, kw);
            const int32_t ix0 = sx.i0, kx0 = sx.k0, kx1 = sx.k1;
            nas_conv2d_pixel_rows(x, in, w, bias, rq, kw, ks, oc, iy0, ky0, ky1, ix0, kx0, kx1,
                                  y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)oc);
        }
    }
}

/* quant::kernels::depthwise_conv2d */
void nas_depthwise_conv2d_s8(const int8_t *x, const nas_hwc *in, const int8_t *w,
                             const int32_t *bias, const nas_requant *rq,
                             const nas_window *win, const nas_hwc *out, int8_t *y) {
    int32_t oy, ox, ch, ky, kx;
    const int32_t c = in->c, kh = win->k[0], kw = win->k[1];
    const size_t xrow = (size_t)in->w * (size_t)c, wrow = (size_t)kw * (size_t)c;
    for (oy = 0; oy < out->h; oy++) {
        /* the kernel rows inside the input, once per output row (padding contributes 0) */
        const int32_t iy0 = oy * win->stride[0] - win->pad[0];
        const int32_t ky0 = iy0 < 0 ? -iy0 : 0;
        const int32_t ky1 = in->h - iy0 < kh ? in->h - iy0 : kh;
        for (ox = 0; ox < out->w; ox++) {
            const int32_t ix0 = ox * win->stride[1] - win->pad[1];
            const int32_t kx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t kx1 = in->w - ix0 < kw ? in->w - ix0 : kw;
            int8_t *yp = y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)c;
            const int8_t *xb, *wb;
            if (ky1 <= ky0 || kx1 <= kx0) {
                /* the window lies in the padding: bias only (no pointer into the input) */
                for (ch = 0; ch < c; ch++) {
                    yp[ch] = nas_requantize(bias[ch], nas_rq_get(rq, ch));
                }
                continue;
            }
            /* first in-range tap: bounds are checked once per pixel, not per tap */
            xb = x + (size_t)(iy0 + ky0) * xrow + (size_t)(ix0 + kx0) * (size_t)c;
            wb = w + (size_t)ky0 * wrow + (size_t)kx0 * (size_t)c;
            ch = 0;
#if NAS_USE_DSP
            /* 4 channels per word (HWC: adjacent channels are adjacent bytes): SXTB16 splits
             * them into halfword lanes and SMLABB / SMLATT multiply-accumulate each lane into
             * its own channel (2 loads, 4 extends, 4 MACs per tap and 4 channels) */
            for (; ch + 4 <= c; ch += 4) {
                int32_t a0 = bias[ch], a1 = bias[ch + 1], a2 = bias[ch + 2], a3 = bias[ch + 3];
                const int8_t *xr = xb + ch, *wr = wb + ch;
                for (ky = ky0; ky < ky1; ky++) {
                    for (kx = 0; kx < kx1 - kx0; kx++) {
                        const uint32_t xw = nas_load32(xr + (size_t)kx * (size_t)c);
                        const uint32_t ww = nas_load32(wr + (size_t)kx * (size_t)c);
                        const int32_t x02 = __sxtb16((int8x4_t)xw), w02 = __sxtb16((int8x4_t)ww);
                        const int32_t x13 = nas_sxtb16_odd(xw), w13 = nas_sxtb16_odd(ww);
                        a0 = __smlabb(x02, w02, a0);
                        a2 = __smlatt(x02, w02, a2);
                        a1 = __smlabb(x13, w13, a1);
                        a3 = __smlatt(x13, w13, a3);
                    }
                    xr += xrow;
                    wr += wrow;
                }
                yp[ch] = nas_requantize(a0, nas_rq_get(rq, ch));
                yp[ch + 1] = nas_requantize(a1, nas_rq_get(rq, ch + 1));
                yp[ch + 2] = nas_requantize(a2, nas_rq_get(rq, ch + 2));
                yp[ch + 3] = nas_requantize(a3, nas_rq_get(rq, ch + 3));
            }
#endif
            for (; ch < c; ch++) {
                int32_t acc = bias[ch];
                const int8_t *xr = xb + ch, *wr = wb + ch;
                for (ky = ky0; ky < ky1; ky++) {
                    for (kx = 0; kx < kx1 - kx0; kx++) {
                        acc += (int32_t)xr[(size_t)kx * (size_t)c] *
                               (int32_t)wr[(size_t)kx * (size_t)c];
                    }
                    xr += xrow;
                    wr += wrow;
                }
                yp[ch] = nas_requantize(acc, nas_rq_get(rq, ch));
            }
        }
    }
}

/* quant::kernels::pool2d. The window is clipped to the input once per pixel (padding takes
 * no part: the average divides by the taps inside), then max or sum over it per channel. */
void nas_pool2d_s8(const int8_t *x, const nas_hwc *in, const nas_window *win,
                   const nas_hwc *out, int32_t avg, int8_t *y) {
    int32_t oy, ox, ch, ky, kx;
    const int32_t c = in->c, kh = win->k[0], kw = win->k[1];
    const size_t xrow = (size_t)in->w * (size_t)c;
    for (oy = 0; oy < out->h; oy++) {
        const nas_span sy = nas_window_span(oy, win->stride[0], win->pad[0], in->h, kh);
        const int32_t iy0 = sy.i0, ky0 = sy.k0, ky1 = sy.k1;
        for (ox = 0; ox < out->w; ox++) {
            const nas_span sx = nas_window_span(ox, win->stride[1], win->pad[1], in->w, kw);
            const int32_t ix0 = sx.i0, kx0 = sx.k0, kx1 = sx.k1;
            int8_t *yp = y + ((size_t)oy * (size_t)out->w + (size_t)ox) * (size_t)c;
            /* taps inside the input (pad < k guarantees >= 1; max(1) as in Rust anyway) */
            const int32_t count =
                ky1 > ky0 && kx1 > kx0 ? (ky1 - ky0) * (kx1 - kx0) : 0;
            const int8_t *xb = count ? x + (size_t)(iy0 + ky0) * xrow +
                                           (size_t)(ix0 + kx0) * (size_t)c
                                     : x;
            for (ch = 0; ch < c; ch++) {
                int32_t sum = 0, mx = -128;
                const int8_t *xr = xb + ch;
                for (ky = 0; count && ky < ky1 - ky0; ky++) {
                    for (kx = 0; kx < kx1 - kx0; kx++) {
                        const int32_t v = xr[(size_t)kx * (size_t)c];
                        sum += v;
                        mx = v > mx ? v : mx;
                    }
                    xr += xrow;
                }
                yp[ch] = (int8_t)(avg ? nas_div_round(sum, count < 1 ? 1 : count) : mx);
            }
        }
    }
}

#if NAS_USE_DSP
/* a0 b[0] + a1 b[1] for ap = (a0, a1) as int16 lanes: h | h << 8 puts b[0] and b[1] in bytes
 * 0 and 2, which SXTB16 sign-extends into the two lanes; one SMUAD. */
static inline int32_t nas_dot2_s8(int32_t ap, const int8_t *b) {
    uint16_t h;
    memcpy(&h, b, 2);
    return __smuad((int16x2_t)ap, (int16x2_t)__sxtb16((int8x4_t)(h | (uint32_t)h << 8)));
}

#if defined(__OPTIMIZE__) /* (-O0's frame pointer leaves too few registers) */
/* pairs >= 1 steps of nas_row_times_rows' P = 2 loop (rows b_c = b + c bs, two per step): the
 * two scores' load -> extend -> SMUAD -> SMMLA (high word + rounding) -> shift -> SSAT chains
 * interleaved by hand (GCC 12 runs one chain after the other, and the in-order M7 then waits at
 * every step); nas_rq_fast with the prepared (s >= 33) requantization. */
static void nas_rows2_dsp(int32_t ap, const int8_t *b, size_t bs, int32_t pairs,
                          const nas_rq_prep *rq, int8_t *out, size_t os) {
    uint32_t t0, t1;
    const int32_t m = rq->d.m, rnd = rq->round_hi, sh = rq->shift_hi;
    __asm__ volatile("1:\n\t"
                     "ldrh %[t0], [%[b]]\n\t"
                     "ldrh %[t1], [%[b], %[bs]]\n\t"
                     "add %[b], %[b], %[bs], lsl #1\n\t"
                     "orr %[t0], %[t0], %[t0], lsl #8\n\t"
                     "orr %[t1], %[t1], %[t1], lsl #8\n\t"
                     "sxtb16 %[t0], %[t0]\n\t"
                     "sxtb16 %[t1], %[t1]\n\t"
                     "smuad %[t0], %[ap], %[t0]\n\t"
                     "smuad %[t1], %[ap], %[t1]\n\t"
                     "smmla %[t0], %[t0], %[m], %[rnd]\n\t"
                     "smmla %[t1], %[t1], %[m], %[rnd]\n\t"
                     "asr %[t0], %[t0], %[sh]\n\t"
                     "asr %[t1], %[t1], %[sh]\n\t"
                     "ssat %[t0], #8, %[t0]\n\t"
                     "ssat %[t1], #8, %[t1]\n\t"
                     "subs %[pairs], %[pairs], #1\n\t"
                     "strb %[t0], [%[o]]\n\t"
                     "strb %[t1], [%[o], %[os]]\n\t"
                     "add %[o], %[o], %[os], lsl #1\n\t"
                     "bne 1b\n\t"
                     : [b] "+&r"(b), [o] "+&r"(out), [pairs] "+&r"(pairs), [t0] "=&r"(t0),
                       [t1] "=&r"(t1)
                     : [bs] "r"(bs), [os] "r"(os), [ap] "r"(ap), [m] "r"(m), [rnd] "r"(rnd),
                       [sh] "r"(sh)
                     : "cc", "memory");
}
#endif
#endif

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

/* nas_row_times_rows for len == 2 (ECGFormer's P = 2 scores) with int8 a and the prepared
 * (s >= 33) requantization: two independent scores per step (the M7 issues in order, so one
 * score's load -> multiply -> requantize chain would leave it idle), each one SMUAD on Cortex-M
 * of (a0, a1) with (b0, b1) as int16 lanes. Its own function: the general one's register
 * save and stack frame cost more than a whole row of these scores. */
static void nas_rows_len2(const int8_t *as, const int8_t *b, size_t bs, int32_t n,
                          const nas_rq_prep *rq, int8_t *out, size_t os) {
    int32_t c = 0;
#if NAS_USE_DSP
    const int32_t ap = (int32_t)((uint32_t)(uint16_t)as[0] | (uint32_t)as[1] << 16);
#define NAS_DOT2(bc) nas_dot2_s8(ap, (bc))
#else
    const int32_t a0 = as[0], a1 = as[1];
#define NAS_DOT2(bc) (a0 * (bc)[0] + a1 * (bc)[1])
#endif
#if NAS_USE_DSP && defined(__OPTIMIZE__)
    if (n >= 2) {
        nas_rows2_dsp(ap, b, bs, n >> 1, rq, out, os);
        c = n & ~1;
    }
#else
    for (; c + 2 <= n; c += 2) {
        const int8_t *b0 = b + (size_t)c * bs;
        const int32_t acc0 = NAS_DOT2(b0), acc1 = NAS_DOT2(b0 + bs);
        out[(size_t)c * os] = nas_rq_fast(acc0, rq->d.m, rq->round_hi, rq->shift_hi);
        out[(size_t)(c + 1) * os] = nas_rq_fast(acc1, rq->d.m, rq->round_hi, rq->shift_hi);
    }
#endif
    if (c < n) {
        out[(size_t)c * os] =
            nas_rq_fast(NAS_DOT2(b + (size_t)c * bs), rq->d.m, rq->round_hi, rq->shift_hi);
    }
#undef NAS_DOT2
}

#if NAS_USE_DSP
/* nas_row_times_rows for n == 2 rows of b (ECGFormer's A V: P = 2 rows of V^T) with uint8 a
 * and the prepared requantization: both rows share each loaded and extended word of a. */
static void nas_rows_n2_u8(const uint8_t *a, const int8_t *b, size_t bs, int32_t len,
                           const nas_rq_prep *rq, int8_t *out, size_t os) {
    const int8_t *b1 = b + bs;
    int32_t i = 0, s0 = 0, s1 = 0;
    for (; i + 4 <= len; i += 4) {
        const uint32_t wa = nas_load32(a + i);
        const int32_t a02 = (int32_t)__uxtb16(wa), a13 = nas_uxtb16_odd(wa);
        s0 = nas_mac4(a02, a13, nas_load32(b + i), s0);
        s1 = nas_mac4(a02, a13, nas_load32(b1 + i), s1);
    }
    for (; i < len; i++) {
        s0 += (int32_t)a[i] * (int32_t)b[i];
        s1 += (int32_t)a[i] * (int32_t)b1[i];
    }
    out[0] = nas_rq_fast(s0, rq->d.m, rq->round_hi, rq->shift_hi);
    out[os] = nas_rq_fast(s1, rq->d.m, rq->round_hi, rq->shift_hi);
}
#endif

#if NAS_USE_DSP
/* out[c os] = requant(a . b_c) for the n rows b_c = b + c bs of `words` whole words and
 * `tail` (1..3) bytes each (an int8 attention head of 5-15 channels not a multiple of 4, e.g.
 * a key-word TinyFormer's 6 or 10). The row a stays in registers, extended once (its last
 * word zero past the row); each b row is read as whole words, the last word reaching up to 3
 * bytes past the row: multiplied by a's zero lanes, those bytes add nothing. They lie in the
 * same buffer (the next row, or the next head's channels of this row) for every row but the
 * last, which reads its tail byte by byte. */
NAS_INLINE_ALWAYS void nas_rows_short(const int8_t *a, const int8_t *b, size_t bs,
                                      const int32_t words, int32_t tail, int32_t n,
                                      const nas_rq_prep *rq, int8_t *out, size_t os) {
    const int32_t m = rq->d.m, rh = rq->round_hi, sh = rq->shift_hi;
    uint32_t last = 0;
    int32_t c, i;
    for (i = 0; i < tail; i++) {
        last |= (uint32_t)(uint8_t)a[4 * words + i] << (8 * i);
    }
    /* a's words t0.. t_words (the last one zero past the row) as even and odd int16 lanes, in
     * scalars: `words` is a constant at each call, so the unused ones and their branches
     * vanish and the rest stay in registers */
    {
        const uint32_t t0 = nas_load32(a);
        const uint32_t t1 = words > 1 ? nas_load32(a + 4) : last;
        const uint32_t t2 = words > 2 ? nas_load32(a + 8) : words == 2 ? last : 0;
        const uint32_t t3 = words == 3 ? last : 0;
        const int32_t e0 = __sxtb16((int8x4_t)t0), o0 = nas_sxtb16_odd(t0);
        const int32_t e1 = __sxtb16((int8x4_t)t1), o1 = nas_sxtb16_odd(t1);
        const int32_t e2 = __sxtb16((int8x4_t)t2), o2 = nas_sxtb16_odd(t2);
        const int32_t e3 = __sxtb16((int8x4_t)t3), o3 = nas_sxtb16_odd(t3);
        const int8_t *bc = b;
        int8_t *oc = out;
        for (c = 0; c + 1 < n; c++, bc += bs, oc += os) {
            int32_t acc = nas_mac4(e0, o0, nas_load32(bc), 0);
            acc = nas_mac4(e1, o1, nas_load32(bc + 4), acc);
            if (words > 1) {
                acc = nas_mac4(e2, o2, nas_load32(bc + 8), acc);
            }
            if (words > 2) {
                acc = nas_mac4(e3, o3, nas_load32(bc + 12), acc);
            }
            *oc = nas_rq_fast(acc, m, rh, sh);
        }
    }
    if (n > 0) {
        /* the last row: whole words, then its tail byte by byte */
        const int8_t *bc = b + (size_t)(n - 1) * bs;
        int32_t acc = nas_dot_s8(a, bc, 4 * words + tail, 0);
        out[(size_t)(n - 1) * os] = nas_rq_fast(acc, m, rh, sh);
    }
}
#endif

/* n dot products y_c = requant(a . b_c), b_c = b + c*bs, stored at out[c*os]: blocks of 4
 * rows of b share each load of a. `a` holds int8 values, or uint8 ones when a_u8 (the
 * softmax probabilities of the fused attention's A V). */
static void nas_rows_any(const void *a, int32_t a_u8, const int8_t *b, size_t bs, int32_t len,
                         int32_t n, const nas_rq_prep *rq, int8_t *out, size_t os) {
    const int8_t *as = (const int8_t *)a;
    const uint8_t *au = (const uint8_t *)a;
    int32_t c = 0, i;
    const nas_rq_prep m = *rq;
#if NAS_USE_DSP
    if (m.fast && !a_u8 && len > 4 && len < 16 && (len & 3) != 0) {
        /* one call per word count: the loops over a's words unroll, a stays in registers */
        switch (len >> 2) {
        case 1:
            nas_rows_short(as, b, bs, 1, len & 3, n, &m, out, os);
            return;
        case 2:
            nas_rows_short(as, b, bs, 2, len & 3, n, &m, out, os);
            return;
        default:
            nas_rows_short(as, b, bs, 3, len & 3, n, &m, out, os);
            return;
        }
    }
    if (m.fast && len > 0 && (len & 3) == 0) {
        /* whole words and the prepared requantization: the assembly loop alone, without the
         * scalar tail and the general requantization around it (GCC then keeps fewer values
         * live across the 14-register loop: about 11 modelled M7 cycles less per block) */
        for (; c + 4 <= n; c += 4) {
            int32_t acc[4] = {0, 0, 0, 0};
            int8_t *oc = out + (size_t)c * os;
            if (a_u8) {
                nas_dot_1x4_dsp_u8(au, b + (size_t)c * bs, bs, len, acc);
            } else {
                nas_dot_1x4_dsp(as, b + (size_t)c * bs, bs, len, acc);
            }
            oc[0] = nas_rq_fast(acc[0], m.d.m, m.round_hi, m.shift_hi);
            oc[os] = nas_rq_fast(acc[1], m.d.m, m.round_hi, m.shift_hi);
            oc[2 * os] = nas_rq_fast(acc[2], m.d.m, m.round_hi, m.shift_hi);
            oc[3 * os] = nas_rq_fast(acc[3], m.d.m, m.round_hi, m.shift_hi);
        }
    }
#endif
    if (len < 4 && m.fast) {
        /* short rows (P = 1 or 3, or uint8 a; int8 P = 2 takes nas_rows_len2): no SIMD step
         * to amortize a 4-row block over, so one row at a time with the (at most 3) elements
         * of a held in registers */
        const int32_t a0 = a_u8 ? au[0] : as[0];
        const int32_t a1 = len > 1 ? (a_u8 ? au[1] : as[1]) : 0;
        const int32_t a2 = len > 2 ? (a_u8 ? au[2] : as[2]) : 0;
        for (; c < n; c++) {
            const int8_t *bc = b + (size_t)c * bs;
            int32_t acc = a0 * bc[0];
            if (len > 1) {
                acc += a1 * bc[1];
            }
            if (len > 2) {
                acc += a2 * bc[2];
            }
            out[(size_t)c * os] = nas_rq_fast(acc, m.d.m, m.round_hi, m.shift_hi);
        }
        return;
    }
    for (; c + 4 <= n; c += 4) {
        int32_t acc[4] = {0, 0, 0, 0};
        if (a_u8) {
            nas_dot_1x4_u8s8(au, b + (size_t)c * bs, bs, len, acc);
        } else {
            nas_dot_1x4_s8(as, b + (size_t)c * bs, bs, len, acc);
        }
        if (m.fast) {
            /* written out: constant indices keep acc[] in registers */
            int8_t *oc = out + (size_t)c * os;
            oc[0] = nas_rq_fast(acc[0], m.d.m, m.round_hi, m.shift_hi);
            oc[os] = nas_rq_fast(acc[1], m.d.m, m.round_hi, m.shift_hi);
            oc[2 * os] = nas_rq_fast(acc[2], m.d.m, m.round_hi, m.shift_hi);
            oc[3 * os] = nas_rq_fast(acc[3], m.d.m, m.round_hi, m.shift_hi);
            continue;
        }
        for (i = 0; i < 4; i++) {
            out[(size_t)(c + i) * os] = nas_rq_apply(acc[i], &m);
        }
    }
    for (; c < n; c++) {
        const int8_t *bc = b + (size_t)c * bs;
        int32_t acc = a_u8 ? nas_dot_u8s8(au, bc, len, 0) : nas_dot_s8(as, bc, len, 0);
        out[(size_t)c * os] = nas_rq_apply(acc, rq);
    }
}

/* The dot products of one attention row (nas_rows_any), the short shapes by their own
 * loops. */
static inline void nas_row_times_rows(const void *a, int32_t a_u8, const int8_t *b, size_t bs,
                                      int32_t len, int32_t n, const nas_rq_prep *rq,
                                      int8_t *out, size_t os) {
    if (len == 2 && !a_u8 && rq->fast) {
        nas_rows_len2((const int8_t *)a, b, bs, n, rq, out, os);
        return;
    }
#if NAS_USE_DSP
    if (n == 2 && a_u8 && rq->fast) {
        nas_rows_n2_u8((const uint8_t *)a, b, bs, len, rq, out, os);
        return;
    }
#endif
    nas_rows_any(a, a_u8, b, bs, len, n, rq, out, os);
}

#if NAS_USE_DSP
/* The fused attention with operand tiles (nas_attention_s8 checked the conditions), 4 query
 * rows at a time: the 4 rows of a head's queries tiled, every key row read once against them
 * (4 scores per key, into 4 score rows), each row's softmax in place, the 4 rows of
 * probabilities tiled (zero past the keys and past the group), then every V^T row of the head
 * against that tile (4 output rows per V^T row read). Scratch: 4 score rows of kp = keys
 * rounded up to 4 bytes, the probability tile (8 kp bytes) and the query tile (8 inner bytes);
 * the generator sets `tiled` only where that pays (inner a multiple of 4, 16 keys or more). */
static void nas_attention_tiled(const int8_t *q, const int8_t *k, const int8_t *v,
                                const nas_attention_params *p, const nas_rq_prep *score_rq,
                                const nas_rq_prep *out_rq, int8_t *scratch, int8_t *out) {
    /* locals: the int8 stores below may alias *p as far as C knows */
    const int32_t heads = p->heads, rows = p->rows, keys = p->keys, inner = p->inner;
    const int32_t kp = (keys + 3) & ~3, v_inner = p->v_inner;
    const nas_strides qs = p->q, ks = p->k, vs = p->v, os = p->out;
    uint8_t *const srows = (uint8_t *)scratch;
    int32_t *const ptile = (int32_t *)(void *)(scratch + 4 * kp);
    int32_t *const qtile = ptile + 2 * kp;
    int32_t h, s, i, t;
    for (h = 0; h < heads; h++) {
        const int8_t *kh = k + (size_t)h * (size_t)ks.head;
        const int8_t *vh = v + (size_t)h * (size_t)vs.head;
        for (s = 0; s < rows; s += 4) {
            const int32_t g = rows - s < 4 ? rows - s : 4;
            const int8_t *q4 = q + (size_t)h * (size_t)qs.head + (size_t)s * (size_t)qs.row;
            int8_t *oh = out + (size_t)h * (size_t)os.head + (size_t)s * (size_t)os.row;
            int32_t direct;
            /* the g rows of scores (row c at srows + c kp) */
            if (score_rq->fast) {
                nas_tile_s8(q4, (size_t)qs.row, g, inner, qtile);
                nas_tile_outputs(qtile, kh, (size_t)ks.row, inner, keys, NULL, score_rq, NULL, g,
                                 (int8_t *)srows, (size_t)kp, 1);
            } else {
                for (i = 0; i < g; i++) {
                    nas_row_times_rows(q4 + (size_t)i * (size_t)qs.row, 0, kh, (size_t)ks.row,
                                       inner, keys, score_rq, (int8_t *)(srows + i * kp), 1);
                }
            }
            for (i = 0; i < 4; i++) {
                uint8_t *row = srows + i * kp;
                if (i < g) {
                    nas_softmax_row((const int8_t *)row, &p->softmax, row, 0);
                    for (t = keys; t < kp; t++) {
                        row[t] = 0;
                    }
                } else {
                    memset(row, 0, (size_t)kp);
                }
                nas_tile_slot_u8(row, kp, i, ptile);
            }
            /* V^T rows read kp bytes: past `keys` times zero probabilities. Rows shorter than kp
             * read into the next row; the head's last row is copied into the (now free) first
             * score row instead, so nothing past V is read. */
            direct = vs.inner >= kp ? v_inner : v_inner - 1;
            nas_tile_outputs(ptile, vh, (size_t)vs.inner, kp, direct, NULL, out_rq, NULL, g, oh,
                             (size_t)os.row, (size_t)os.inner);
            if (direct < v_inner) {
                memcpy(srows, vh + (size_t)direct * (size_t)vs.inner, (size_t)keys);
                memset(srows + keys, 0, (size_t)(kp - keys));
                nas_tile_outputs(ptile, (const int8_t *)srows, 0, kp, 1, NULL, out_rq, NULL, g,
                                 oh + (size_t)direct * (size_t)os.inner, (size_t)os.row,
                                 (size_t)os.inner);
            }
        }
    }
}
#endif

void nas_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v,
                      const nas_attention_params *p, int8_t *scratch, int8_t *out) {
    int32_t s, h, t, j;
    /* contiguous reductions take the blocked SIMD dot products: q . k over P when both are
     * row-major, A . v over T when v is stored transposed (the Weight-Reuse layout [H P, T]
     * of the V projection: v.row == 1) */
    const int32_t qk_rows = p->q.inner == 1 && p->k.inner == 1;
    const int32_t av_rows = p->v.row == 1;
    const nas_rq_prep score_rq = nas_rq_prepare(p->score_rq), out_rq = nas_rq_prepare(p->out_rq);
    /* the row of probabilities, uint8 in the scores' place */
    uint8_t *probs = (uint8_t *)scratch;
#if NAS_USE_DSP
    if (p->tiled && qk_rows && av_rows && p->inner > 0 && (p->inner & 3) == 0 && out_rq.fast) {
        nas_attention_tiled(q, k, v, p, &score_rq, &out_rq, scratch, out);
        return;
    }
#endif
    for (s = 0; s < p->rows; s++) {
        for (h = 0; h < p->heads; h++) {
            const int8_t *qr = q + (size_t)h * (size_t)p->q.head + (size_t)s * (size_t)p->q.row;
            const int8_t *kh = k + (size_t)h * (size_t)p->k.head;
            const int8_t *vh = v + (size_t)h * (size_t)p->v.head;
            int8_t *o = out + (size_t)h * (size_t)p->out.head + (size_t)s * (size_t)p->out.row;
            /* one row of scores */
            if (qk_rows) {
                nas_row_times_rows(qr, 0, kh, (size_t)p->k.row, p->inner, p->keys, &score_rq,
                                   scratch, 1);
            } else {
                for (t = 0; t < p->keys; t++) {
                    int32_t acc = nas_dot_strided_s8(qr, p->q.inner,
                                                     kh + (size_t)t * (size_t)p->k.row,
                                                     p->k.inner, p->inner);
                    scratch[t] = nas_rq_apply(acc, &score_rq);
                }
            }
            /* its softmax, in place, as uint8 probabilities (the graph's tensor would hold
             * p - 128; A . V multiplies the uint8 p directly) */
            nas_softmax_row(scratch, &p->softmax, probs, 0);
            /* the output row: A[s, :] . V */
            if (av_rows) {
                nas_row_times_rows(probs, 1, vh, (size_t)p->v.inner, p->keys, p->v_inner,
                                   &out_rq, o, (size_t)p->out.inner);
            } else {
                for (j = 0; j < p->v_inner; j++) {
                    const int8_t *vj = vh + (size_t)j * (size_t)p->v.inner;
                    int32_t acc = 0;
                    for (t = 0; t < p->keys; t++) {
                        acc += (int32_t)probs[t] * (int32_t)vj[(size_t)t * (size_t)p->v.row];
                    }
                    o[(size_t)j * (size_t)p->out.inner] = nas_rq_apply(acc, &out_rq);
                }
            }
        }
    }
}

void nas_fwsa_s8(const int8_t *m2, const int8_t *x, const int8_t *v,
                 const nas_attention_params *p, int8_t *scratch, int8_t *out) {
    nas_attention_s8(m2, x, v, p, scratch, out);
}
