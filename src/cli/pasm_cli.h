/* What the PASM commands (mine, round, run) share: the `mine` and `round`
 * work as functions `run` calls in-process, and the loading of training and
 * validation data the same way `pasm train` does. */
#ifndef PASM_CLI_PASM_H
#define PASM_CLI_PASM_H

#include "cli/cli_util.h"
#include "cli/commands.h"

/* Loads the training split and the validation set for a model's input size,
 * channels and classes (meta), as pasm train does: --val-data, else the
 * source's validation split, else (no such split, or the same images) a
 * seeded stratified val_fraction of training. *held_out is set when the
 * validation set was cut from training; then *train holds the whole split
 * (the mined indices refer to it) and train_idx/val_idx (malloc'd) say
 * which images are which. Returns an exit code (0 ok). */
int cli_load_train_val(const char *cmd, const char *data, const char *split, const char *val_data,
                       const char *val_split, double val_fraction, uint64_t seed,
                       const pasm_model_meta *meta, pasm_dataset *train, pasm_dataset *val,
                       int *held_out, int **train_idx, int *n_train);

/* A checkpoint's accuracy on one split, without and with flip TTA, and the
 * faces counted (0: the data has no such split). */
typedef struct {
    double accuracy, accuracy_tta;
    int count;
} cli_split_accuracy;

/* Evaluates a checkpoint on n splits (split[i] of data[i]) with one network
 * (mo: its device and precision): out[i] for each. Returns an exit code (0
 * ok). */
int cli_eval_splits(const char *cmd, const char *model, const cli_model_options *mo, int n,
                    const char *const *data, const char *const *split, cli_split_accuracy *out);

/* pasm mine's options (strings are borrowed). */
typedef struct {
    const char *model, *data, *split, *gallery, *out;
    pasm_attack_options attack;
    int side;              /* 0 = a quarter of the input side */
    int overwrite;
    int stop_after_images; /* tests: stop (resumably) after this many; 0 = off */
    int device;            /* pasm_device the teacher runs on */
    int precision;         /* pasm_precision of the teacher's convolutions */
} cli_mine_args;

void cli_mine_defaults(cli_mine_args *a);
/* Mines (or resumes mining) as pasm mine does; returns the exit code. */
int cli_mine_run(const cli_mine_args *a);


/* pasm round's options (strings are borrowed). */
typedef struct {
    const char *teacher, *data, *split, *val_data, *val_split, *mined, *out;
    const char *fill, *mix, *student_init, *schedule;
    int side; /* 0 = the mined file's */
    float mask_prob, kd_alpha, kd_temp, lr, momentum, wd, val_fraction;
    int epochs, batch, crop_padding, hflip, skip_misclassified;
    uint64_t seed;
    int resume; /* continue from OUT's state file when it exists */
    /* Controls (no mined file needed): no_mask — the "masked" copies are
     * the originals (kd-only); erase_copy — they are the originals under
     * random erasing with probability 1, drawn every epoch (random-erasing). */
    int no_mask, erase_copy;
    float erase_p; /* random erasing of every training face (0 = off) */
    int precision; /* pasm_precision of the teacher's and student's convolutions */
    int device;    /* pasm_device both run on */
} cli_round_args;

void cli_round_defaults(cli_round_args *a);
int cli_round_run(const cli_round_args *a);

#endif
