/*
 * nas_dsp.h - Cortex-M DSP helpers shared by the runtime's .c files (private: not part of the
 * kernel API). NAS_USE_DSP is 1 where the core has the DSP extension (SXTB16, SMLAD).
 */
#ifndef NAS_DSP_H
#define NAS_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define NAS_USE_DSP 1
#else
#define NAS_USE_DSP 0
#endif

#if NAS_USE_DSP
/* The odd bytes of a word as two int16 lanes: SXTB16 with its ROR #8 operand, one
 * instruction (GCC 12's arm_acle.h lacks __ror, and a shift + __sxtb16 costs two). */
static inline int32_t nas_sxtb16_odd(uint32_t w) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

/* The same for unsigned bytes: UXTB16 with ROR #8 (uint8 softmax probabilities). */
static inline int32_t nas_uxtb16_odd(uint32_t w) {
    int32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

static inline uint32_t nas_load32(const void *p) {
    uint32_t w;
    memcpy(&w, p, 4); /* unaligned word loads are legal on M4/M7 */
    return w;
}

/* acc + the 4 MACs of one word of a and one of b: SXTB16 splits each word into its even and
 * odd bytes as int16 lanes, SMLAD multiplies lane-wise and adds both products. */
static inline int32_t nas_mac4(int32_t a02, int32_t a13, uint32_t wb, int32_t acc) {
    acc = __smlad(a02, __sxtb16((int8x4_t)wb), acc);
    return __smlad(a13, nas_sxtb16_odd(wb), acc);
}
#endif

#endif /* NAS_DSP_H */
