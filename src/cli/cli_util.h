/* Helpers shared by the commands: strict number parsing for options, error
 * printing, thread setup, loading a model with the PyTorch-file options. */
#ifndef PASM_CLI_UTIL_H
#define PASM_CLI_UTIL_H

#include <stdint.h>

#include "pasm/pasm.h"

/* Exit codes. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Each parses the whole string or prints "pasm CMD: --opt: ..." and returns 0. */
int cli_int(const char *cmd, const char *opt, const char *s, int lo, int hi, int *out);
int cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, float *out);
int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
/* Prints "pasm CMD: <last error>" to stderr; returns the exit code for st. */
int cli_fail(const char *cmd, pasm_status st);
/* Prints "pasm CMD: <message>" and a pointer to --help; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_threads(int threads);
/* 1 when stderr is a terminal (progress bars), else 0. */
int cli_stderr_is_tty(void);
/* Installs SIGINT/SIGTERM handlers that set *flag (and restore the default on
 * a second signal). */
void cli_catch_signals(volatile int *flag);

typedef struct {
    int input_size;
    const char *classes, *norm;
    int precision; /* pasm_precision of the network's convolutions */
    int device;    /* pasm_device it computes on */
} cli_model_options;

/* --device D: cpu or cuda into *out (pasm_device), checked to be usable
 * here. Returns 0, or the exit code after a message: 2 for an unknown
 * name, 1 for a device this build or machine lacks. */
int cli_device(const char *cmd, const char *s, int *out);
/* "device: cuda: NVIDIA H200, ..." on stdout for a GPU, nothing for the CPU. */
void cli_print_device(int device);
/* After training on a device: where the steps ran (pasm_train_result). */
void cli_print_steps(int device, const pasm_train_result *r);

/* --precision P: fp32 or bf16 into *out (pasm_precision); 0 with a usage
 * message otherwise. */
int cli_precision(const char *cmd, const char *s, int *out);

/* Loads a checkpoint into a network of the given mode for batches of
 * max_batch: PASM_NET_EVAL for inference and evaluation, PASM_NET_EVAL_GRAD
 * for the gradient attacks. */
int cli_load_model(const char *cmd, const char *path, const cli_model_options *mo, int max_batch,
                   pasm_net_mode mode, pasm_net **net, pasm_model_meta *meta);
/* 1 when two datasets hold the same images (a source without a separate
 * validation split gives the training images back for any split name). */
int cli_same_images(const pasm_dataset *a, const pasm_dataset *b);
/* pasm_dataset_load, with what this process loaded before from an
 * unchanged CSV copied out instead of read again (phases of `pasm run` and
 * `pasm experiment` load the same splits over and over). */
pasm_status cli_dataset_load(const pasm_load_spec *spec, pasm_dataset *ds);
/* Lets go of what cli_dataset_load keeps (at the end of a command). */
void cli_data_cache_clear(void);
/* Loads data for a model (classes matched by name, its input size and
 * channels). ignore_unknown drops classes the model lacks, with a warning. */
int cli_load_data_for_model(const char *cmd, const char *path, const char *split,
                            const pasm_model_meta *meta, int ignore_unknown, pasm_dataset *ds);

#endif
