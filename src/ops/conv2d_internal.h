/* Private to src/ops: the direct AVX-512 convolution kernel that conv2d.c
 * picks at run time for the shapes it handles (conv2d_direct.c). */
#ifndef PASM_OPS_CONV2D_INTERNAL_H
#define PASM_OPS_CONV2D_INTERNAL_H

#include "pasm/ops.h"

/* Non-zero when the CPU has AVX-512F, the shape is one the direct kernel
 * handles (stride 1, K <= 7, Cout a multiple of 8, rows wide enough to fill
 * most of a 16-lane vector) and PASM_CONV_DIRECT is not set to 0. */
int pasm_conv2d_direct_ok(const pasm_conv2d_shape *s);
/* y = epilogue(conv(x, weight)) over the whole batch (ep NULL: the plain
 * convolution), threads over (image, channel block, output row); every
 * output is summed by one thread in a fixed order, so results do not depend
 * on the thread count. */
void pasm_conv2d_direct_forward(const pasm_conv2d_shape *s, const float *x, const float *weight,
                                const pasm_conv2d_epilogue *ep, float *y);

#endif
