/* Progress bars on stderr when it is a terminal; otherwise one plain line per
 * epoch, so logs stay readable. */
#include "cli/progress.h"

#include <stdio.h>

void cli_progress_init(cli_progress *p, int tty) {
    p->tty = tty;
    p->drawn = 0;
    p->last_draw = 0;
}

static void format_time(double s, char *buf, size_t len) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, len, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%d:%02d", t / 60, t % 60);
}

static void bar(char *buf, int width, double frac) {
    int full = (int)(frac * width + 0.5);
    for (int i = 0; i < width; i++) buf[i] = i < full ? '#' : '.';
    buf[width] = '\0';
}

void cli_progress_batch(void *user, const pasm_train_progress *pr) {
    cli_progress *p = user;
    if (!p->tty) return;
    double now = pasm_now_seconds();
    if (pr->batch != pr->batches && now - p->last_draw < 0.1) return;
    p->last_draw = now;
    char b[32], eta[32];
    bar(b, 24, (double)pr->batch / pr->batches);
    format_time(pr->eta_seconds, eta, sizeof eta);
    fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d loss %.4f lr %.4g %.0f img/s ETA %s",
            pr->epoch, pr->epochs, b, pr->batch, pr->batches, pr->loss, (double)pr->lr,
            pr->images_per_s, eta);
    fflush(stderr);
    p->drawn = 1;
}

void cli_progress_epoch(void *user, const pasm_epoch_stats *e) {
    cli_progress *p = user;
    if (p->drawn) fprintf(stderr, "\r\033[K");
    p->drawn = 0;
    if (e->has_val)
        fprintf(stderr,
                "epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f mean-class %.4f%s"
                " | %.0f img/s, %.1f s\n",
                e->epoch, e->train_loss, e->train_accuracy, e->val_loss, e->val_accuracy,
                e->val_mean_class_accuracy, e->is_best ? " (best)" : "", e->images_per_s,
                e->seconds);
    else
        fprintf(stderr, "epoch %d: train loss %.4f acc %.4f | %.0f img/s, %.1f s\n", e->epoch,
                e->train_loss, e->train_accuracy, e->images_per_s, e->seconds);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (p->drawn) fprintf(stderr, "\n");
    p->drawn = 0;
}

void cli_progress_step(cli_progress *p, const char *what, int64_t done, int64_t total,
                       double per_s) {
    if (!p->tty) return;
    double now = pasm_now_seconds();
    if (done != total && now - p->last_draw < 0.1) return;
    p->last_draw = now;
    char b[32], eta[32];
    bar(b, 24, total ? (double)done / total : 1);
    format_time(per_s > 0 ? (double)(total - done) / per_s : -1, eta, sizeof eta);
    fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %.0f/s ETA %s", what, b, (long long)done,
            (long long)total, per_s, eta);
    fflush(stderr);
    p->drawn = 1;
}
