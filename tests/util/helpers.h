/* Helpers shared by the tests: where ../shared is, scratch folders, array
 * comparison with a printed maximum difference. */
#ifndef PASM_TEST_UTIL_H
#define PASM_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* $PASM_SHARED or "../shared", joined with rel; returns a static buffer. */
const char *test_shared_path(const char *rel);
/* The pasm binary ($PASM_BIN or build/pasm). */
const char *test_pasm_bin(void);
/* Creates a fresh scratch folder under /tmp; returns a static copy of its path. */
char *test_tmpdir(char *buf, size_t len);
/* rm -rf of a scratch folder made by test_tmpdir. */
void test_rmdir(const char *path);
/* Max |a-b| and the max of |a-b| / (atol + rtol*|b|) over n floats. */
double test_max_abs_diff(const float *a, const float *b, int64_t n);
/* max|a-b| / max|b| (a NaN difference counts as infinite). */
double test_rel_diff(const float *a, const float *b, int64_t n);
/* The cosine of the angle between a and b, in double (1 for two zero vectors). */
double test_cosine(const float *a, const float *b, int64_t n);
/* Two float32 gradients of a ReLU network computed in different summation
 * orders (the GPU against the CPU): 1 when max|a-b|/max|b| <= limit or,
 * with flips (a real GPU, whose convolutions sum in orders of their own),
 * when the difference is of the kind one ReLU taken the other way makes (a
 * pre-activation within rounding of zero: the gradient behind it jumps):
 * max|a-b|/max|b| <= 0.05, ||a-b||/||b|| <= 0.02 and cosine >= 0.9998.
 * Prints label and the figures. On the CPU alone, weights moved by one or
 * two units in the last place move the input gradient of a width-64
 * ResNet-18 (batch 8) by 0.7-1.6% of its largest entry and that of the
 * gray48 parity case by up to 4.6%, with relative L2 up to 0.0046 and cosine
 * at least 0.99999; the H200 against the CPU, with every convolution on
 * pasm's direct kernels, reached L2 0.0072 (cosine 0.99997, max 2.7%) on the
 * frozen network's. bench/grad_sensitivity measures these floors. Without
 * flips (the host emulation, whose convolutions are the CPU's) the limit
 * alone holds: there the floor is about 2e-6. */
int test_gradient_close(const char *label, const float *a, const float *b, int64_t n,
                        double limit, int flips);
/* Fails the test when some |a-b| > atol + rtol*|b|; prints the max difference
 * under the given label. */
void test_assert_close(const char *label, const float *a, const float *b, int64_t n, double atol,
                       double rtol);

/* Runs `pasm ARGS` (a shell-quoted argument string, printf-style) with
 * stderr folded into stdout; returns the exit code (-1 when killed by a
 * signal) and, when output is not NULL, the output (malloc'd). */
int test_run_pasm(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when the two files exist and have the same bytes. */
int test_files_equal(const char *a, const char *b);
/* A number of a pasm run's RUN/summary.json: the `key` of its round entry at
 * position `entry` (-1: the last entry). Fails the test when it is missing. */
double test_summary_value(const char *run, int entry, const char *key);
/* 1 when that entry's `key` is the string want. */
int test_summary_string_is(const char *run, int entry, const char *key, const char *want);

/* pasm_net_init(net, seed), then BN weights, biases and running statistics
 * far from the identity (so folding matters), drawn from stream. */
struct pasm_net;
void test_randomise_net(struct pasm_net *net, uint64_t seed, uint64_t stream);

/* Sets (value NULL: unsets) an environment variable for a part of a test,
 * whatever the caller's environment says; returns what it was, for
 * test_env_restore (which frees it). */
char *test_env_set(const char *name, const char *value);
void test_env_restore(const char *name, char *saved);

/* Where the GPU tests run: 1 on a real GPU; 2 where this build has the CUDA
 * backend but the machine no GPU: the backend's host emulation
 * (PASM_CUDA_EMULATE=1, set here for this process and its children), so the
 * GPU paths above the kernels are tested anyway; 0 in builds without CUDA.
 * With PASM_REQUIRE_GPU set (bench/gpu-check.sh), no GPU ends the test
 * program with exit status 1 instead.
 * Prints which, once. */
int test_cuda_device(void);

#endif
