/* pasm experiment: PASM and its controls over several seeds, from a JSON
 * plan. Every arm x seed is one `pasm run` in DIR/ARM/seedS; arms of a seed
 * share one round-0 baseline, trained once in DIR/baselines/seedS (an arm
 * whose options change the baseline gets its own, DIR/baselines/seedS-ARM)
 * and handed to the runs with --baseline; long-baseline arms train their own
 * network. Runs are resumable and finished ones are skipped, so the same
 * command continues a killed experiment. Each run is a child process (its
 * output in DIR/logs/NAME.log); --jobs runs several at once.
 *
 * The tables: DIR/table.md and DIR/table.csv give, per arm and round, mean
 * and standard deviation over seeds of the validation and test accuracy
 * (and test with flip TTA); DIR/tests.csv and the end of table.md compare
 * every PASM arm with every control on the test accuracy after the last
 * round (no TTA): one-sided paired t-tests over seeds (pasm-method.md's
 * rule) and one-sided Welch tests, each with Holm's correction over the
 * controls compared. A gain holds when the paired test's Holm-corrected p
 * is below 0.05 over at least 3 seeds. */
#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/pasm_cli.h"
#include "pasm/stats.h"

static const char *CMD = "experiment";

#define MAX_ARMS 32
#define MAX_SEEDS 64
#define MAX_RUNS (MAX_SEEDS * (MAX_ARMS + MAX_ARMS))
#define MAX_ROUNDS 64

/* pasm run's options that make the round-0 baseline: equal values share it. */
static const char *const BASELINE_OPTIONS[] = {
    "data", "split", "val-data", "val-split", "test-split", "val-fraction", "input-size",
    "channels", "width", "epochs", "batch", "lr", "schedule", "momentum", "wd", "crop-padding",
    "no-flip", "erase-p", "precision"};
/* Compute choices that every run gets, baselines too, without making a
 * baseline another one. */
static const char *const COMPUTE_OPTIONS[] = {"device"};
static const char *const CONTROLS[] = {"long-baseline", "kd-only", "random-point",
                                       "random-erasing", "cam-erasing"};
/* Options a plan may not set: the experiment sets them per run. */
static const char *const RESERVED_OPTIONS[] = {"out", "seed", "control", "baseline", "threads",
                                               "stop-after-phases", "stop-mining-after", "help"};

static int in_list(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, list[i])) return 1;
    return 0;
}
#define IN(name, list) in_list(name, list, sizeof list / sizeof *list)

typedef struct {
    char name[64];
    const char *control; /* NULL: PASM */
    cJSON *options;      /* merged: plan options, then the arm's */
    char baseline[80];   /* baselines/ sub-folder name pattern suffix ("" = shared) */
} arm;

typedef struct {
    int arm;        /* -1: a baseline */
    int baseline;   /* for arms: the index of the baseline run, -1 none */
    uint64_t seed;
    char dir[4096];
    char name[160]; /* for logs */
    cJSON *options;
    int state;      /* 0 waiting, 1 running, 2 done, 3 failed */
    pid_t pid;
} run_task;

typedef struct {
    cJSON *plan;
    arm arms[MAX_ARMS];
    int n_arms;
    uint64_t seeds[MAX_SEEDS];
    int n_seeds;
    run_task runs[MAX_RUNS];
    int n_runs;
    const char *out;
    int jobs, threads;
} experiment;

static void usage(FILE *f) {
    fprintf(f,
            "usage: pasm experiment --plan PLAN.json --out DIR [--jobs J] [--threads T]\n\n"
            "Runs every arm of the plan (PASM with its options, or a control) for every seed\n"
            "as a `pasm run` in DIR/ARM/seedS, arms of a seed sharing one round-0 baseline\n"
            "(DIR/baselines/seedS), then writes DIR/table.md, DIR/table.csv (mean and sd per\n"
            "arm and round) and DIR/tests.csv (PASM against each control on the test split\n"
            "after the last round: one-sided paired and Welch t-tests, Holm-corrected).\n"
            "Run it again to continue after a kill: finished runs are reused.\n\n"
            "The plan (JSON):\n"
            "  {\"seeds\": [0, 1, 2],\n"
            "   \"options\": {\"data\": \"fer2013.csv.gz\", \"width\": 16, \"epochs\": 10,\n"
            "               \"rounds\": 2, \"attack\": \"grad\"},\n"
            "   \"arms\": [{\"name\": \"pasm\"},\n"
            "            {\"name\": \"pasm-de\", \"options\": {\"attack\": \"de\"}},\n"
            "            {\"name\": \"random-point\", \"control\": \"random-point\"},\n"
            "            {\"name\": \"long\", \"control\": \"long-baseline\"}]}\n"
            "  options are pasm run's long options without the dashes: a string or number is\n"
            "  the value, true a flag, false leaves it out. An arm's options add to or\n"
            "  replace the plan's. out, seed, control, baseline and threads are set here.\n\n"
            "  --plan FILE     the plan (required)\n"
            "  --out DIR       the experiment folder (required)\n"
            "  --jobs J        runs at once, each a process (1)\n"
            "  --threads T     threads of each run (0 = the cores / J)\n"
            "  --tables-only   start no run: the tables of the runs finished so far\n"
            "  --help          this text\n");
}

/* ---- the plan ---- */

static pasm_status plan_error(const char *path, const char *what) {
    return pasm_errorf(PASM_ERR_FORMAT, "%s: %s", path, what);
}

static pasm_status check_options(const char *path, const char *where, const cJSON *o) {
    if (!o) return PASM_OK;
    if (!cJSON_IsObject(o))
        return pasm_errorf(PASM_ERR_FORMAT, "%s: %s must be an object of pasm run options", path,
                           where);
    const cJSON *v;
    cJSON_ArrayForEach(v, o) {
        if (IN(v->string, RESERVED_OPTIONS))
            return pasm_errorf(PASM_ERR_FORMAT, "%s: %s sets \"%s\", which the experiment sets "
                                                "itself",
                               path, where, v->string);
        if (!cJSON_IsString(v) && !cJSON_IsNumber(v) && !cJSON_IsBool(v))
            return pasm_errorf(PASM_ERR_FORMAT, "%s: %s: \"%s\" must be a string, a number or "
                                                "true/false",
                               path, where, v->string);
    }
    return PASM_OK;
}

/* merged = a copy of base with over's items added or replaced. */
static cJSON *merge(const cJSON *base, const cJSON *over) {
    cJSON *m = base ? cJSON_Duplicate(base, 1) : cJSON_CreateObject();
    const cJSON *v;
    if (over)
        cJSON_ArrayForEach(v, over) {
            cJSON_DeleteItemFromObjectCaseSensitive(m, v->string);
            cJSON_AddItemToObject(m, v->string, cJSON_Duplicate(v, 1));
        }
    return m;
}

/* Copies into dst those of src's options named in keys. */
static void copy_options(cJSON *dst, const cJSON *src, const char *const *keys, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, keys[i]);
        if (v) cJSON_AddItemToObject(dst, keys[i], cJSON_Duplicate(v, 1));
    }
}
#define COPY_OPTIONS(dst, src, list) copy_options(dst, src, list, sizeof list / sizeof *list)

/* The baseline options of o, as one comparable JSON text. */
static char *baseline_key(const cJSON *o) {
    cJSON *k = cJSON_CreateObject();
    COPY_OPTIONS(k, o, BASELINE_OPTIONS);
    char *s = cJSON_PrintUnformatted(k);
    cJSON_Delete(k);
    return s;
}

static pasm_status plan_load(experiment *e, const char *path) {
    unsigned char *data;
    size_t size;
    pasm_status st = pasm_read_file(path, &data, &size);
    if (st) return st;
    e->plan = cJSON_ParseWithLength((const char *)data, size);
    free(data);
    if (!cJSON_IsObject(e->plan)) return plan_error(path, "not a JSON object");
    const cJSON *seeds = cJSON_GetObjectItemCaseSensitive(e->plan, "seeds");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(e->plan, "options");
    const cJSON *arms = cJSON_GetObjectItemCaseSensitive(e->plan, "arms");
    if (!cJSON_IsArray(seeds) || cJSON_GetArraySize(seeds) < 1 ||
        cJSON_GetArraySize(seeds) > MAX_SEEDS)
        return plan_error(path, "\"seeds\" must be an array of 1 to 64 seeds");
    const cJSON *v;
    cJSON_ArrayForEach(v, seeds) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!(d >= 0 && d <= 9007199254740992.0 && d == floor(d)))
            return plan_error(path, "a seed is not a whole number from 0 to 2^53");
        for (int i = 0; i < e->n_seeds; i++)
            if (e->seeds[i] == (uint64_t)d) return plan_error(path, "a seed appears twice");
        e->seeds[e->n_seeds++] = (uint64_t)d;
    }
    if ((st = check_options(path, "\"options\"", opts))) return st;
    if (!cJSON_IsArray(arms) || cJSON_GetArraySize(arms) < 1 ||
        cJSON_GetArraySize(arms) > MAX_ARMS)
        return plan_error(path, "\"arms\" must be an array of 1 to 32 arms");
    const cJSON *known[] = {seeds, opts, arms};
    cJSON_ArrayForEach(v, e->plan) {
        int ok = 0;
        for (int i = 0; i < 3; i++) ok |= v == known[i];
        if (!ok)
            return pasm_errorf(PASM_ERR_FORMAT, "%s: unknown key \"%s\" (known: seeds, options, "
                                                "arms)",
                               path, v->string);
    }
    char *common = baseline_key(opts);
    cJSON_ArrayForEach(v, arms) {
        arm *a = &e->arms[e->n_arms];
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "name");
        const cJSON *control = cJSON_GetObjectItemCaseSensitive(v, "control");
        const cJSON *aopts = cJSON_GetObjectItemCaseSensitive(v, "options");
        char where[96];
        snprintf(where, sizeof where, "arm %d", e->n_arms + 1);
        if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 40) {
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: %s needs a \"name\" of 1 to 40 characters",
                             path, where);
            break;
        }
        for (const char *c = name->valuestring; *c && !st; c++)
            if (!isalnum((unsigned char)*c) && !strchr("-_.", *c))
                st = pasm_errorf(PASM_ERR_FORMAT, "%s: arm name \"%s\": use letters, digits, "
                                                  "'-', '_' and '.'",
                                 path, name->valuestring);
        if (!st && (!strcmp(name->valuestring, "baselines") || !strcmp(name->valuestring, "logs")))
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: \"%s\" is a folder of the experiment; choose "
                                              "another arm name",
                             path, name->valuestring);
        for (int i = 0; i < e->n_arms && !st; i++)
            if (!strcmp(e->arms[i].name, name->valuestring))
                st = pasm_errorf(PASM_ERR_FORMAT, "%s: two arms are called \"%s\"", path,
                                 name->valuestring);
        if (!st && control && (!cJSON_IsString(control)))
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: arm \"%s\": \"control\" must be a string",
                             path, name->valuestring);
        if (!st && control && strcmp(control->valuestring, "none") &&
            !IN(control->valuestring, CONTROLS))
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: arm \"%s\": unknown control \"%s\" (known: "
                                              "none, long-baseline, kd-only, random-point, "
                                              "random-erasing, cam-erasing)",
                             path, name->valuestring, control->valuestring);
        if (!st) st = check_options(path, where, aopts);
        if (st) break;
        snprintf(a->name, sizeof a->name, "%s", name->valuestring);
        a->control = control && strcmp(control->valuestring, "none") ? control->valuestring : NULL;
        a->options = merge(opts, aopts);
        if (!cJSON_GetObjectItemCaseSensitive(a->options, "data")) {
            st = pasm_errorf(PASM_ERR_FORMAT, "%s: arm \"%s\" has no \"data\" option", path,
                             a->name);
            e->n_arms++;
            break;
        }
        char *key = baseline_key(a->options);
        if (strcmp(key, common))
            snprintf(a->baseline, sizeof a->baseline, "-%s", name->valuestring);
        free(key);
        e->n_arms++;
    }
    free(common);
    return st;
}

/* ---- runs ---- */

static void plan_runs(experiment *e) {
    for (int s = 0; s < e->n_seeds; s++) {
        const uint64_t seed = e->seeds[s];
        for (int a = 0; a < e->n_arms; a++) {
            const arm *A = &e->arms[a];
            int b = -1;
            if (!A->control || strcmp(A->control, "long-baseline")) {
                char name[160];
                snprintf(name, sizeof name, "baselines/seed%llu%s", (unsigned long long)seed,
                         A->baseline);
                for (int i = 0; i < e->n_runs && b < 0; i++)
                    if (e->runs[i].arm < 0 && !strcmp(e->runs[i].name, name)) b = i;
                if (b < 0) {
                    run_task *r = &e->runs[b = e->n_runs++];
                    memset(r, 0, sizeof *r);
                    r->arm = -1, r->baseline = -1, r->seed = seed;
                    snprintf(r->name, sizeof r->name, "%s", name);
                    snprintf(r->dir, sizeof r->dir, "%s/%s", e->out, name);
                    /* a baseline run: round 0 only, with the baseline options */
                    r->options = cJSON_CreateObject();
                    COPY_OPTIONS(r->options, A->options, BASELINE_OPTIONS);
                    COPY_OPTIONS(r->options, A->options, COMPUTE_OPTIONS);
                    cJSON_AddNumberToObject(r->options, "rounds", 0);
                }
            }
            run_task *r = &e->runs[e->n_runs++];
            memset(r, 0, sizeof *r);
            r->arm = a, r->baseline = b, r->seed = seed;
            char name[160];
            snprintf(name, sizeof name, "%s/seed%llu", A->name, (unsigned long long)seed);
            snprintf(r->name, sizeof r->name, "%s", name);
            snprintf(r->dir, sizeof r->dir, "%s/%s", e->out, name);
            r->options = cJSON_Duplicate(A->options, 1);
        }
    }
}

/* argv for pasm run (strings malloc'd; freed by the child's exit). */
static char **run_argv(const experiment *e, const run_task *r, int threads) {
    int cap = 16 + 2 * cJSON_GetArraySize(r->options), n = 0;
    char **argv = calloc((size_t)cap, sizeof *argv);
    if (!argv) return NULL;
    argv[n++] = strdup("run");
    const cJSON *v;
    cJSON_ArrayForEach(v, r->options) {
        if (cJSON_IsFalse(v)) continue;
        char opt[128];
        snprintf(opt, sizeof opt, "--%s", v->string);
        argv[n++] = strdup(opt);
        if (cJSON_IsTrue(v)) continue;
        char val[4200];
        if (cJSON_IsString(v)) snprintf(val, sizeof val, "%s", v->valuestring);
        else if (v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e15)
            snprintf(val, sizeof val, "%.0f", v->valuedouble);
        else snprintf(val, sizeof val, "%.17g", v->valuedouble);
        argv[n++] = strdup(val);
    }
    char seed[32], th[16], base[4200];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    snprintf(th, sizeof th, "%d", threads);
    argv[n++] = strdup("--seed"), argv[n++] = strdup(seed);
    argv[n++] = strdup("--threads"), argv[n++] = strdup(th);
    argv[n++] = strdup("--out"), argv[n++] = strdup(r->dir);
    if (r->arm >= 0 && e->arms[r->arm].control)
        argv[n++] = strdup("--control"), argv[n++] = strdup(e->arms[r->arm].control);
    if (r->baseline >= 0) {
        snprintf(base, sizeof base, "%s/round0.safetensors", e->runs[r->baseline].dir);
        argv[n++] = strdup("--baseline"), argv[n++] = strdup(base);
    }
    argv[n] = NULL;
    return argv;
}

static int mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0777) && errno != EEXIST ? -1 : 0;
}

static pid_t start_run(const experiment *e, const run_task *r, int threads) {
    char log[4200], logdir[4200];
    snprintf(logdir, sizeof logdir, "%s/logs", e->out);
    snprintf(log, sizeof log, "%s/logs/%s.log", e->out, r->name);
    for (char *p = log + strlen(logdir) + 1; *p; p++)
        if (*p == '/') *p = '_';
    char parent[4200];
    snprintf(parent, sizeof parent, "%s", r->dir);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    if (mkdirs(logdir) || mkdirs(parent)) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    char **argv = run_argv(e, r, threads);
    if (!argv) _exit(EXIT_FAIL);
    int argc = 0;
    printf("pasm");
    for (; argv[argc]; argc++) printf(" %s", argv[argc]);
    printf("\n");
    fflush(stdout);
    int rc = pasm_cmd_run(argc, argv);
    fflush(stdout);
    fflush(stderr);
    _exit(rc);
}

static volatile int stop_requested;

/* Runs every run not finished, baselines before the arms that use them. */
static int run_all(experiment *e) {
    int running = 0, failed = 0;
    const int threads = e->threads;
    for (;;) {
        int started = 0;
        for (int i = 0; i < e->n_runs && running < e->jobs && !failed && !stop_requested; i++) {
            run_task *r = &e->runs[i];
            if (r->state != 0) continue;
            if (r->baseline >= 0 && e->runs[r->baseline].state != 2) continue;
            r->pid = start_run(e, r, threads);
            if (r->pid < 0) {
                fprintf(stderr, "pasm experiment: cannot start %s: %s\n", r->name,
                        strerror(errno));
                r->state = 3, failed = 1;
                break;
            }
            r->state = 1, running++, started++;
            printf("%s: started (log: %s/logs/)\n", r->name, e->out);
            fflush(stdout);
        }
        if (!running) break;
        int status;
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < e->n_runs; i++) {
            run_task *r = &e->runs[i];
            if (r->state != 1 || r->pid != pid) continue;
            running--;
            int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            r->state = ok ? 2 : 3;
            if (!ok) {
                failed = 1;
                fprintf(stderr, "pasm experiment: %s failed (%s %d); see %s/logs/ — run the same "
                                "command again to resume\n",
                        r->name, WIFEXITED(status) ? "exit status" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), e->out);
            } else printf("%s: finished\n", r->name);
            fflush(stdout);
        }
        (void)started;
    }
    if (stop_requested) {
        fprintf(stderr, "pasm experiment: interrupted; run the same command again to resume\n");
        return EXIT_FAIL;
    }
    return failed ? EXIT_FAIL : EXIT_OK;
}

/* ---- tables ---- */

typedef struct {
    int have;
    double val, test, test_tta;
} round_result;

/* Reads one run's summary into res[0..MAX_ROUNDS). Returns its planned last
 * round when the run has reached it, else -1 (an unfinished run is left out
 * of the tests, not compared at an earlier round). */
static int read_summary(const run_task *r, round_result *res) {
    memset(res, 0, MAX_ROUNDS * sizeof *res);
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", r->dir);
    unsigned char *data;
    size_t size;
    if (pasm_read_file(path, &data, &size)) {
        pasm_clear_error();
        return -1;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)data, size);
    free(data);
    int last = -1, planned = 2;
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "args"),
                                                       "rounds");
    if (cJSON_IsNumber(rv)) planned = rv->valueint;
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(o, "rounds")) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(row, "round");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, "val_accuracy");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(row, "test_accuracy");
        const cJSON *tt = cJSON_GetObjectItemCaseSensitive(row, "test_accuracy_tta");
        if (!cJSON_IsNumber(k) || k->valueint < 0 || k->valueint >= MAX_ROUNDS) continue;
        round_result *x = &res[k->valueint];
        x->have = 1;
        x->val = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        x->test = cJSON_IsNumber(t) ? t->valuedouble : NAN;
        x->test_tta = cJSON_IsNumber(tt) ? tt->valuedouble : NAN;
        if (k->valueint > last) last = k->valueint;
    }
    cJSON_Delete(o);
    return last == planned ? last : -1;
}

static const char *split_name(const cJSON *opts, const char *key, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(opts, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static void cell(char *buf, size_t len, const double *x, int n) {
    double mean, sd;
    int m = 0;
    double y[MAX_SEEDS];
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) y[m++] = x[i];
    if (!m) {
        snprintf(buf, len, "–");
        return;
    }
    pasm_mean_sd(y, m, &mean, &sd);
    if (m < 2) snprintf(buf, len, "%.2f", 100 * mean);
    else snprintf(buf, len, "%.2f ± %.2f", 100 * mean, 100 * sd);
}

static void csv_num(FILE *f, double x) {
    if (isnan(x)) fprintf(f, ",");
    else fprintf(f, ",%.6f", x);
}

static const char *fmt_p(char *buf, size_t len, double p) {
    if (isnan(p)) snprintf(buf, len, "n/a");
    else if (p < 1e-4) snprintf(buf, len, "%.1e", p);
    else snprintf(buf, len, "%.4f", p);
    return buf;
}

static pasm_status write_tables(const experiment *e) {
    static round_result res[MAX_ARMS][MAX_SEEDS][MAX_ROUNDS];
    static int last[MAX_ARMS][MAX_SEEDS];
    int max_round = 0;
    for (int i = 0; i < e->n_runs; i++) {
        const run_task *r = &e->runs[i];
        if (r->arm < 0) continue;
        int s = 0;
        while (e->seeds[s] != r->seed) s++;
        last[r->arm][s] = read_summary(r, res[r->arm][s]);
        for (int k = 0; k < MAX_ROUNDS; k++)
            if (res[r->arm][s][k].have && k > max_round) max_round = k;
    }
    const cJSON *o0 = e->arms[0].options;
    const char *val_split = split_name(o0, "val-split", "PublicTest");
    const char *test_split = split_name(o0, "test-split", "PrivateTest");
    char path[4200];
    snprintf(path, sizeof path, "%s/table.csv", e->out);
    FILE *csv = fopen(path, "w");
    snprintf(path, sizeof path, "%s/tests.csv", e->out);
    FILE *tcsv = fopen(path, "w");
    snprintf(path, sizeof path, "%s/table.md", e->out);
    FILE *md = fopen(path, "w");
    if (!csv || !tcsv || !md) {
        if (csv) fclose(csv);
        if (tcsv) fclose(tcsv);
        if (md) fclose(md);
        return pasm_errorf(PASM_ERR_IO, "%s: cannot write the tables", e->out);
    }
    fprintf(csv, "arm,control,round,seeds,val_mean,val_sd,test_mean,test_sd,test_tta_mean,"
                 "test_tta_sd\n");
    fprintf(md, "# Experiment %s\n\nAccuracy in %%, mean ± standard deviation over seeds "
                "(%d seeds planned:",
            e->out, e->n_seeds);
    for (int s = 0; s < e->n_seeds; s++) fprintf(md, " %llu", (unsigned long long)e->seeds[s]);
    fprintf(md, "). Validation split %s, test split %s; TTA = horizontal-flip test-time "
                "augmentation. Round 0 is the baseline shared by the arms of a seed; "
                "long-baseline has only its final network, shown at the round whose "
                "sample-passes it matches.\n\n",
            val_split, test_split);
    fprintf(md, "| arm | control | round | seeds | %s | %s | %s (TTA) |\n| --- | --- | --- | --- "
                "| --- | --- | --- |\n",
            val_split, test_split, test_split);
    for (int a = 0; a < e->n_arms; a++) {
        const arm *A = &e->arms[a];
        for (int k = 0; k <= max_round; k++) {
            double v[MAX_SEEDS], t[MAX_SEEDS], tt[MAX_SEEDS];
            int n = 0;
            for (int s = 0; s < e->n_seeds; s++)
                if (res[a][s][k].have) {
                    v[n] = res[a][s][k].val, t[n] = res[a][s][k].test;
                    tt[n] = res[a][s][k].test_tta, n++;
                }
            if (!n) continue;
            char c1[64], c2[64], c3[64];
            cell(c1, sizeof c1, v, n), cell(c2, sizeof c2, t, n), cell(c3, sizeof c3, tt, n);
            fprintf(md, "| %s | %s | %d | %d | %s | %s | %s |\n", A->name,
                    A->control ? A->control : "– (PASM)", k, n, c1, c2, c3);
            double m1, s1, m2, s2, m3, s3;
            pasm_mean_sd(v, n, &m1, &s1), pasm_mean_sd(t, n, &m2, &s2);
            pasm_mean_sd(tt, n, &m3, &s3);
            fprintf(csv, "%s,%s,%d,%d", A->name, A->control ? A->control : "none", k, n);
            csv_num(csv, m1), csv_num(csv, s1), csv_num(csv, m2), csv_num(csv, s2);
            csv_num(csv, m3), csv_num(csv, s3);
            fprintf(csv, "\n");
        }
    }
    /* PASM arms against the controls: test accuracy after the last round */
    fprintf(tcsv, "pasm_arm,control_arm,control,pairs,mean_diff,paired_t,paired_df,paired_p,"
                  "paired_p_holm,welch_t,welch_df,welch_p,welch_p_holm,gain_holds\n");
    fprintf(md, "\n## PASM against the controls\n\n%s accuracy after each arm's last round, no "
                "TTA. One-sided tests of \"PASM is better\": paired t-test over seeds "
                "(pasm-method.md's rule) and Welch's t-test, each with Holm's correction over "
                "the controls compared with that PASM arm. A gain holds when the paired "
                "test's corrected p is below 0.05 with at least 3 seeds.\n\n"
                "| PASM arm | control | pairs | mean difference (points) | paired p | paired p "
                "(Holm) | Welch p | Welch p (Holm) | gain holds |\n| --- | --- | --- | --- | "
                "--- | --- | --- | --- | --- |\n",
            test_split);
    int any = 0;
    for (int p = 0; p < e->n_arms; p++) {
        if (e->arms[p].control) continue;
        int ctl[MAX_ARMS], m = 0;
        pasm_ttest paired[MAX_ARMS], welch[MAX_ARMS];
        double pp[MAX_ARMS], wp[MAX_ARMS], pph[MAX_ARMS], wph[MAX_ARMS];
        for (int c = 0; c < e->n_arms; c++) {
            if (!e->arms[c].control) continue;
            double a[MAX_SEEDS], b[MAX_SEEDS], wa[MAX_SEEDS], wb[MAX_SEEDS];
            int n = 0, na = 0, nb = 0;
            for (int s = 0; s < e->n_seeds; s++) {
                int lp = last[p][s], lc = last[c][s];
                int hp = lp >= 0 && !isnan(res[p][s][lp].test);
                int hc = lc >= 0 && !isnan(res[c][s][lc].test);
                if (hp) wa[na++] = res[p][s][lp].test;
                if (hc) wb[nb++] = res[c][s][lc].test;
                if (hp && hc) a[n] = res[p][s][lp].test, b[n] = res[c][s][lc].test, n++;
            }
            paired[m] = pasm_ttest_paired(a, b, n);
            welch[m] = pasm_ttest_welch(wa, na, wb, nb);
            pp[m] = paired[m].p, wp[m] = welch[m].p;
            ctl[m++] = c;
        }
        pasm_holm(pp, m, pph);
        pasm_holm(wp, m, wph);
        for (int j = 0; j < m; j++) {
            const arm *C = &e->arms[ctl[j]];
            int holds = paired[j].n >= 3 && pph[j] < 0.05;
            char b1[32], b2[32], b3[32], b4[32];
            double diff = 100 * paired[j].mean_diff;
            if (fabs(diff) < 0.005) diff = 0; /* no "-0.00" */
            fprintf(md, "| %s | %s | %d | %+.2f | %s | %s | %s | %s | %s |\n", e->arms[p].name,
                    C->name, paired[j].n, diff, fmt_p(b1, 32, pp[j]),
                    fmt_p(b2, 32, pph[j]), fmt_p(b3, 32, wp[j]), fmt_p(b4, 32, wph[j]),
                    holds ? "yes" : paired[j].n < 3 ? "no (fewer than 3 seeds)" : "no");
            fprintf(tcsv, "%s,%s,%s,%d", e->arms[p].name, C->name, C->control, paired[j].n);
            csv_num(tcsv, paired[j].mean_diff), csv_num(tcsv, paired[j].t);
            csv_num(tcsv, paired[j].df), csv_num(tcsv, pp[j]), csv_num(tcsv, pph[j]);
            csv_num(tcsv, welch[j].t), csv_num(tcsv, welch[j].df), csv_num(tcsv, wp[j]);
            csv_num(tcsv, wph[j]);
            fprintf(tcsv, ",%d\n", holds);
            any = 1;
        }
    }
    if (!any) fprintf(md, "| – | – | – | – | – | – | – | – | no PASM arm and control to compare |\n");
    int bad = ferror(csv) | ferror(tcsv) | ferror(md);
    bad |= fclose(csv) | fclose(tcsv) | fclose(md);
    if (bad) return pasm_errorf(PASM_ERR_IO, "%s: writing the tables failed", e->out);
    printf("tables: %s/table.md, %s/table.csv, %s/tests.csv\n", e->out, e->out, e->out);
    return PASM_OK;
}

static void experiment_free(experiment *e) {
    for (int i = 0; i < e->n_arms; i++) cJSON_Delete(e->arms[i].options);
    for (int i = 0; i < e->n_runs; i++) cJSON_Delete(e->runs[i].options);
    cJSON_Delete(e->plan);
}

int pasm_cmd_experiment(int argc, char **argv) {
    enum { O_PLAN = 256, O_OUT, O_JOBS, O_THREADS, O_TABLES_ONLY, O_HELP };
    static const struct option opts[] = {
        {"plan", required_argument, 0, O_PLAN}, {"out", required_argument, 0, O_OUT},
        {"jobs", required_argument, 0, O_JOBS}, {"threads", required_argument, 0, O_THREADS},
        {"tables-only", no_argument, 0, O_TABLES_ONLY},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *plan = NULL;
    int tables_only = 0;
    static experiment e;
    memset(&e, 0, sizeof e);
    e.jobs = 1;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case O_PLAN: plan = optarg; break;
        case O_OUT: e.out = optarg; break;
        case O_JOBS: ok = cli_int(CMD, "--jobs", optarg, 1, 64, &e.jobs); break;
        case O_THREADS: ok = cli_int(CMD, "--threads", optarg, 0, 1024, &e.threads); break;
        case O_TABLES_ONLY: tables_only = 1; break;
        case O_HELP: usage(stdout); return EXIT_OK;
        default: return cli_usage_error(CMD, "unknown or incomplete option");
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!plan || !e.out) return cli_usage_error(CMD, "--plan and --out are required");
    if (!e.threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        e.threads = cores > e.jobs ? (int)(cores / e.jobs) : 1;
    }
    pasm_status st = plan_load(&e, plan);
    if (st) {
        experiment_free(&e);
        return cli_fail(CMD, st);
    }
    if (mkdirs(e.out)) {
        experiment_free(&e);
        return cli_fail(CMD, pasm_errorf(PASM_ERR_IO, "%s: cannot create the folder: %s", e.out,
                                         strerror(errno)));
    }
    plan_runs(&e);
    int n_baselines = 0;
    for (int i = 0; i < e.n_runs; i++) n_baselines += e.runs[i].arm < 0;
    printf("experiment: %d arms x %d seeds, %d baselines, %d runs in all (finished ones are "
           "reused), %d at a time, %d threads each\n",
           e.n_arms, e.n_seeds, n_baselines, e.n_runs, e.jobs, e.threads);
    cli_catch_signals(&stop_requested);
    int rc = tables_only ? EXIT_OK : run_all(&e);
    /* the tables of what has finished, also after a failure or a stop */
    if ((st = write_tables(&e))) rc = cli_fail(CMD, st);
    if (!rc) printf("done: %s/table.md\n", e.out);
    experiment_free(&e);
    return rc;
}
