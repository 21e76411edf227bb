/* Learning-rate schedules, evaluated per optimiser step: OneCycleLR exactly
 * as PyTorch computes it (momentum cycling included), cosine with linear
 * warm-up, and constant. */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "pasm/train.h"

void pasm_schedule_init(pasm_schedule *s, pasm_schedule_kind kind, float max_lr,
                        int64_t total_steps, int64_t warmup_steps) {
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->max_lr = max_lr;
    s->total_steps = total_steps < 1 ? 1 : total_steps;
    s->warmup_steps = warmup_steps < 0 ? 0 : warmup_steps;
    s->pct_start = 0.3f;
    s->div_factor = 25.0f;
    s->final_div_factor = 1e4f;
    s->base_momentum = 0.85f;
    s->max_momentum = 0.95f;
    s->cycle_momentum = 1;
}

pasm_status pasm_schedule_parse(const char *name, pasm_schedule_kind *kind) {
    if (!strcasecmp(name, "onecycle")) *kind = PASM_SCHEDULE_ONECYCLE;
    else if (!strcasecmp(name, "cosine")) *kind = PASM_SCHEDULE_COSINE;
    else if (!strcasecmp(name, "constant")) *kind = PASM_SCHEDULE_CONSTANT;
    else
        return pasm_errorf(PASM_ERR_INVALID,
                           "unknown schedule '%s' (known: onecycle, cosine, constant)", name);
    return PASM_OK;
}

const char *pasm_schedule_name(pasm_schedule_kind kind) {
    switch (kind) {
    case PASM_SCHEDULE_ONECYCLE: return "onecycle";
    case PASM_SCHEDULE_COSINE: return "cosine";
    case PASM_SCHEDULE_CONSTANT: return "constant";
    }
    return "?";
}

static double cos_anneal(double start, double end, double pct) {
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

/* OneCycleLR's phase walk: phase 1 ends at pct_start*total - 1, phase 2 at
 * total - 1; within a phase the value is annealed by the share of it done. */
static double onecycle_value(const pasm_schedule *s, int64_t step, double v0, double v1,
                             double v2) {
    double end1 = (double)s->pct_start * (double)s->total_steps - 1.0;
    double end2 = (double)s->total_steps - 1.0;
    double t = (double)step;
    if (t <= end1) return cos_anneal(v0, v1, t / end1);
    return cos_anneal(v1, v2, (t - end1) / (end2 - end1));
}

float pasm_schedule_lr(const pasm_schedule *s, int64_t step) {
    double max_lr = s->max_lr;
    switch (s->kind) {
    case PASM_SCHEDULE_ONECYCLE: {
        double initial = max_lr / s->div_factor, min_lr = initial / s->final_div_factor;
        return (float)onecycle_value(s, step, initial, max_lr, min_lr);
    }
    case PASM_SCHEDULE_COSINE: {
        if (step < s->warmup_steps) return (float)(max_lr * (double)(step + 1) / s->warmup_steps);
        int64_t span = s->total_steps - s->warmup_steps;
        if (span < 1) return (float)max_lr;
        double pct = (double)(step - s->warmup_steps) / (double)span;
        if (pct > 1) pct = 1;
        return (float)(0.5 * max_lr * (1.0 + cos(M_PI * pct)));
    }
    case PASM_SCHEDULE_CONSTANT: return s->max_lr;
    }
    return s->max_lr;
}

float pasm_schedule_momentum(const pasm_schedule *s, int64_t step, float fallback) {
    if (s->kind != PASM_SCHEDULE_ONECYCLE || !s->cycle_momentum) return fallback;
    return (float)onecycle_value(s, step, s->max_momentum, s->base_momentum, s->max_momentum);
}
