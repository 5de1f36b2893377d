/* Routes an exported layer-wise attention project's Linear and MatMul calls to CMSIS-NN
 * (model.c is compiled with `-include cmsis_shim.h`; the runtime's own kernels stay linked for
 * everything else: transposes, the I-BERT softmax). Declarations only: cmsis_shim.c. */
#ifndef CMSIS_SHIM_H
#define CMSIS_SHIM_H

#define nas_linear_s8 cmsis_linear_s8
#define nas_matmul_s8 cmsis_matmul_s8

#endif
