/* Fully connected layer on the CPU through OpenBLAS sgemm:
 * y (N,Out) = x (N,In) . W^T + b with W (Out,In), PyTorch's layout.
 * OpenBLAS threads split the output matrix, never the summed dimension, so
 * results are bit-identical run to run for a given thread count; the bias
 * gradient is summed in double over the batch in order. */
#include <cblas.h>

#include "pasm/ops.h"

void pasm_linear_forward(int n, int in, int out, const float *x, const float *weight,
                         const float *bias, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, weight, in,
                0.0f, y, out);
    if (!bias) return;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) y[(size_t)i * out + o] += bias[o];
}

/* dx = dy . W, dW = dy^T . x, db = column sums of dy. */
void pasm_linear_backward(int n, int in, int out, const float *x, const float *weight,
                          const float *dy, float *dx, float *dweight, float *dbias) {
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, weight,
                    in, 0.0f, dx, in);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in,
                    0.0f, dweight, in);
    if (!dbias) return;
    for (int o = 0; o < out; o++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += dy[(size_t)i * out + o];
        dbias[o] = (float)sum;
    }
}
