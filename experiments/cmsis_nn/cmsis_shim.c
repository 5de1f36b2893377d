/* The paper's CMSIS-NN baseline (pulp-transformer Sec. 5.5: "their optimized linear layers
 * kernels, additional loops, data marshaling operations, and I-BERT's integer softmax"): the
 * runtime's Linear and MatMul entry points implemented with CMSIS-NN's arm_fully_connected_s8.
 *
 * Requantization: the graph's dyadic m 2^-s becomes CMSIS-NN's (Q31 multiplier, shift) of the
 * same value; CMSIS-NN rounds twice (doubling high multiply, then the shift), so outputs may
 * differ from the integer interpreter by a unit in the last place (run.py reports the largest
 * difference). The work per output is CMSIS-NN's, which is what is measured. */
#include <stdlib.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "nas_kernels.h"

/* Largest b operand a MatMul transposes, and the widest MatMul output (zero bias): the three
 * attention shapes need 81 x 32 bytes and 81 columns. */
#define CMSIS_SHIM_SCRATCH 8192
#define CMSIS_SHIM_MAX_N 512

static int8_t cmsis_bt[CMSIS_SHIM_SCRATCH];
static const int32_t cmsis_zero_bias[CMSIS_SHIM_MAX_N];

/* m 2^-s = multiplier 2^-31 2^shift with the multiplier normalised into [2^30, 2^31). */
static cmsis_nn_per_tensor_quant_params cmsis_quant(nas_dyadic d) {
    cmsis_nn_per_tensor_quant_params q;
    int32_t m = d.m, k = 0;
    while (m > 0 && m < ((int32_t)1 << 30)) {
        m <<= 1;
        k++;
    }
    q.multiplier = m;
    q.shift = 31 - d.s - k;
    return q;
}

static void cmsis_fc(const int8_t *x, int32_t rows, int32_t in_f, const int8_t *w,
                     const int32_t *bias, int32_t out_f, int32_t input_offset, nas_dyadic rq,
                     int8_t *y) {
    const cmsis_nn_context ctx = {NULL, 0};
    cmsis_nn_fc_params fc;
    const cmsis_nn_per_tensor_quant_params q = cmsis_quant(rq);
    const cmsis_nn_dims in = {rows, 1, 1, in_f}, filt = {in_f, 1, 1, out_f};
    const cmsis_nn_dims bd = {1, 1, 1, out_f}, out = {rows, 1, 1, out_f};
    fc.input_offset = input_offset;
    fc.filter_offset = 0;
    fc.output_offset = 0;
    fc.activation.min = -128;
    fc.activation.max = 127;
    if (arm_fully_connected_s8(&ctx, &fc, &q, &in, x, &filt, w, &bd, bias, &out, y) !=
        ARM_CMSIS_NN_SUCCESS) {
        abort();
    }
}

void cmsis_linear_s8(const int8_t *x, const int8_t *w, const int32_t *bias,
                     const nas_requant *rq, const nas_linear_dims *d, int8_t *y,
                     int32_t *tile) {
    (void)tile; /* the runtime's operand tile: CMSIS-NN extends its operands itself */
    if (rq->per_channel) {
        abort(); /* the attention stages are quantized per tensor */
    }
    cmsis_fc(x, d->rows, d->in_f, w, bias, d->out_f, 0, rq->mult[0], y);
}

/* One fully connected call per batch (head) with b as the weights: b [n, k] as it is when
 * transpose_b, else transposed into a scratch first (the data marshaling the paper's baseline
 * adds around CMSIS-NN). */
void cmsis_matmul_s8(const int8_t *a, const int8_t *b, const nas_matmul_dims *d,
                     nas_dyadic rq, int8_t *y) {
    const size_t k = (size_t)d->k, n = (size_t)d->n, m = (size_t)d->m;
    int32_t bi;
    size_t i, j;
    if (k * n > CMSIS_SHIM_SCRATCH || d->n > CMSIS_SHIM_MAX_N) {
        abort();
    }
    for (bi = 0; bi < d->batch; bi++) {
        const int8_t *bb = b + (size_t)bi * k * n;
        if (!d->transpose_b) {
            for (i = 0; i < k; i++) {
                for (j = 0; j < n; j++) {
                    cmsis_bt[j * k + i] = bb[i * n + j];
                }
            }
            bb = cmsis_bt;
        }
        cmsis_fc(a + (size_t)bi * m * k, d->m, d->k, bb, cmsis_zero_bias, d->n, d->a_offset, rq,
                 y + (size_t)bi * m * n);
    }
}
