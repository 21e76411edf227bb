/* PASM_HD marks the small inline functions that the CPU code and the CUDA
 * kernels share (index maps, per-element loss arithmetic), so that both
 * sides compute from one source. */
#ifndef PASM_HOSTDEV_H
#define PASM_HOSTDEV_H

#ifdef __CUDACC__
#define PASM_HD __host__ __device__
#else
#define PASM_HD
#endif

#endif
