/*
 * nas_sparse.h - int8 kernels that read TinyFormer's blockwise run-length coded weights
 * (SparseEngine, TinyFormer Sec. III-D) in place, bit-exact with the dense kernels of
 * nas_kernels.h: a skipped block is all zeros, so it adds nothing to the int32 accumulator.
 *
 * Weight stream (the `rle` crate's format, version 1; multi-byte integers little endian):
 *   offset 0   4 bytes   magic "BRLE"
 *          4   1         version = 1
 *          5   1         block b (1..255)
 *          6   2         reserved
 *          8   4         rows (u32): one row per output channel
 *         12   4         cols (u32): the reduction dimension
 *         16   2 * rows  entry count of each row (u16)
 *         ...            entries of row 0, row 1, ...: (dis: u8, val_1 .. val_w: int8)
 * A row keeps a block cursor starting at 0; each entry first advances it by `dis` skipped
 * all-zero blocks, holds block `cursor` (columns cursor*b .. cursor*b + w, w = b except for a
 * shorter last block of the row), then advances it by one. An entry with dis = 255 and zero
 * values is a filler for gaps longer than 255 blocks.
 *
 * Reduction layouts (the columns of a row): Linear [out][in]; Conv2d [out_c][kh][kw][in_c]
 * (the dense kernel's layout); depthwise [c][kh][kw] (transposed from the dense [kh][kw][c],
 * so that a row is one channel and a block of kw is one kernel row, as TinyFormer prunes it).
 * The generator writes the stream; the kernels trust its header (it is not user input).
 */
#ifndef NAS_SPARSE_H
#define NAS_SPARSE_H

#include "nas_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes before the row-count table. */
#define NAS_RLE_HEADER_BYTES 16

/* y[r, o] = requant_o(bias[o] + sum_i x[r, i] w[o, i]), w coded with rows = out_f,
 * cols = in_f. */
void nas_linear_rle_s8(const int8_t *x, const uint8_t *w, const int32_t *bias,
                       const nas_requant *rq, const nas_linear_dims *d, int8_t *y);

/* HWC convolution, w coded with rows = out_c, cols = kh * kw * in_c. */
void nas_conv2d_rle_s8(const int8_t *x, const nas_hwc *in, const uint8_t *w,
                       const int32_t *bias, const nas_requant *rq, const nas_window *win,
                       const nas_hwc *out, int8_t *y);

/* HWC depthwise convolution (multiplier 1), w coded with rows = c, cols = kh * kw. */
void nas_depthwise_conv2d_rle_s8(const int8_t *x, const nas_hwc *in, const uint8_t *w,
                                 const int32_t *bias, const nas_requant *rq,
                                 const nas_window *win, const nas_hwc *out, int8_t *y);

#ifdef __cplusplus
}
#endif

#endif /* NAS_SPARSE_H */
