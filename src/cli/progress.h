/* Progress display for long work: a redrawn bar on a terminal (epoch, batch,
 * loss, images/s, ETA), plain log lines per epoch otherwise. */
#ifndef PASM_CLI_PROGRESS_H
#define PASM_CLI_PROGRESS_H

#include "pasm/train.h"

typedef struct {
    int tty;
    int drawn;         /* a bar is on the current line */
    double last_draw;  /* seconds, to redraw at most ~10 times a second */
} cli_progress;

void cli_progress_init(cli_progress *p, int tty);
void cli_progress_batch(void *user, const pasm_train_progress *p);
void cli_progress_epoch(void *user, const pasm_epoch_stats *e);
void cli_progress_end(cli_progress *p);
/* A generic bar for other long loops (mining, evaluation). */
void cli_progress_step(cli_progress *p, const char *what, int64_t done, int64_t total,
                       double per_s);

#endif
