/* pasm mine: attacks a frozen teacher on every image of a split and writes
 * the mined points (CSV + JSON sidecar) chunk by chunk, so a killed mining
 * resumes where it stopped; optionally a gallery PNG; on synthetic faces it
 * reports how many points land in the expression regions. */
#include <cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/pasm_cli.h"
#include "cli/progress.h"

static const char *CMD = "mine";

static void usage(FILE *f) {
    fprintf(f,
            "usage: pasm mine --model TEACHER --data PATH --out MINED.csv [options]\n\n"
            "Finds, for every image, the point whose change most lowers the teacher's\n"
            "probability of the true class, and writes MINED.csv with MINED.json (settings,\n"
            "teacher sha256). A killed mining resumes when run again with the same options.\n\n"
            "  --model CKPT          the teacher (required)\n"
            "  --data PATH           FER2013 CSV or image folder (required)\n"
            "  --split S             split to mine (Training)\n"
            "  --attack A            de, grad or iter (de); random or cam place the point\n"
            "                        without attacking (the random-point and cam-erasing\n"
            "                        controls: uniform, or the peak of the teacher's Grad-CAM)\n"
            "  --de-pop N            de population (32)\n"
            "  --de-gens N           de generations (8)\n"
            "  --de-f F              de mutation factor (0.5)\n"
            "  --no-de-early-stop    de: search the whole budget even once fooled\n"
            "  --iter-max N          iter: most pixels changed (8)\n"
            "  --attack-batch N      images per forward pass (1024)\n"
            "  --seed S              seed of the attack's random streams (0)\n"
            "  --side N              square side for the gallery, stored as round's default\n"
            "                        (a quarter of the input side)\n"
            "  --gallery PNG         faces with their squares and per-class heat maps\n"
            "  --out MINED.csv       mined points (required)\n"
            "  --overwrite           start afresh when MINED exists with other settings\n"
            "  --threads T           threads, 0 = all cores (0)\n"
            "  --device D            cpu or cuda: the teacher's passes on the GPU (cpu)\n"
            "  --precision P         fp32 or bf16 convolutions of the teacher (fp32); bf16 is\n"
            "                        mixed precision as torch.autocast, and can pick other\n"
            "                        points than fp32 where two are close\n"
            "  --help                this text\n");
}

void cli_mine_defaults(cli_mine_args *a) {
    memset(a, 0, sizeof *a);
    pasm_attack_defaults(&a->attack);
    a->split = "Training";
}

static char *settings_json(const cli_mine_args *a, const char *sha, int count, int side,
                           int input_size) {
    const pasm_attack_options *o = &a->attack;
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "attack", pasm_attack_name(o->kind));
    cJSON_AddNumberToObject(s, "de_pop", o->de_pop);
    cJSON_AddNumberToObject(s, "de_gens", o->de_gens);
    cJSON_AddNumberToObject(s, "de_f", o->de_f);
    cJSON_AddBoolToObject(s, "de_early_stop", o->de_early_stop);
    cJSON_AddNumberToObject(s, "iter_max", o->iter_max);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(s, "seed", seed);
    cJSON_AddNumberToObject(s, "side", side);
    cJSON_AddStringToObject(s, "teacher", a->model);
    cJSON_AddStringToObject(s, "teacher_sha256", sha);
    cJSON_AddStringToObject(s, "data", a->data);
    cJSON_AddStringToObject(s, "split", a->split);
    cJSON_AddNumberToObject(s, "count", count);
    cJSON_AddNumberToObject(s, "input_size", input_size);
    if (a->precision) /* only when not fp32: files mined in fp32 keep their settings */
        cJSON_AddStringToObject(s, "precision", pasm_precision_name((pasm_precision)a->precision));
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    return text;
}

/* Attacks images [done, n) in chunks, appending each chunk's rows. */
static pasm_status mine_chunks(const cli_mine_args *a, const pasm_scorer *sc,
                               const pasm_dataset *ds, pasm_mined_writer *w, int done) {
    const int chunk = a->attack.attack_batch;
    const int64_t per_image = (int64_t)ds->channels * ds->size * ds->size;
    int64_t *index = malloc((size_t)chunk * sizeof(int64_t));
    pasm_point *pts = malloc((size_t)chunk * sizeof(pasm_point));
    pasm_status st = index && pts ? PASM_OK : pasm_errorf(PASM_ERR_NOMEM, "out of memory");
    cli_progress progress;
    cli_progress_init(&progress, cli_stderr_is_tty());
    double t0 = pasm_now_seconds();
    int mined_now = 0;
    for (int start = done; start < ds->n && !st; start += chunk) {
        int n = ds->n - start < chunk ? ds->n - start : chunk;
        if (a->stop_after_images && mined_now >= a->stop_after_images) {
            st = pasm_errorf(PASM_ERR_INTERRUPTED, "stopped after %d images as asked; run again "
                                                   "to resume",
                             mined_now);
            break;
        }
        for (int i = 0; i < n; i++) index[i] = start + i;
        st = pasm_attack_images(sc, &a->attack, ds->images + start * per_image,
                                ds->labels + start, index, n, pts);
        if (!st) st = pasm_mined_writer_append(w, index, ds->labels + start, pts, n);
        mined_now += n;
        double el = pasm_now_seconds() - t0;
        cli_progress_step(&progress, "mining", start + n, ds->n, mined_now / (el > 0 ? el : 1e-9));
    }
    cli_progress_end(&progress);
    free(index);
    free(pts);
    return st;
}

static void report(const cli_mine_args *a, const pasm_dataset *ds, int side) {
    pasm_mined m;
    if (pasm_mined_read(a->out, 0, &m, NULL)) return;
    int fooled = 0;
    double before = 0, after = 0, queries = 0;
    for (int i = 0; i < m.n; i++) {
        fooled += m.fooled[i];
        before += m.p_before[i];
        after += m.p_after[i];
        queries += (double)m.queries[i];
    }
    if (m.n)
        printf("mined %d images with %s: fooled %.1f%%, mean p(true) %.3f -> %.3f, %.1f queries "
               "per image -> %s\n",
               m.n, pasm_attack_name(a->attack.kind), 100.0 * fooled / m.n, before / m.n,
               after / m.n, queries / m.n, a->out);
    double share = 0, random_share = 0;
    int matched = 0;
    if (!pasm_region_hits(a->data, ds, &m, &share, &random_share, &matched) && matched)
        printf("expression regions (regions.csv, %d faces): %.1f%% of the points inside, "
               "%.1f%% for random points\n",
               matched, 100 * share, 100 * random_share);
    pasm_clear_error();
    if (a->gallery && a->gallery[0]) {
        pasm_status st = pasm_gallery_write(a->gallery, ds, &m, side, 64);
        if (st) fprintf(stderr, "pasm mine: gallery: %s\n", pasm_last_error());
        else printf("gallery -> %s\n", a->gallery);
    }
    pasm_mined_free(&m);
}

int cli_mine_run(const cli_mine_args *a) {
    pasm_net *net = NULL;
    pasm_model_meta meta;
    /* first for its metadata (the data's size and classes), then planned for
     * the batches mining will use: no more than the images there are */
    int rc = cli_load_model(CMD, a->model, NULL, 1, PASM_NET_EVAL, &net, &meta);
    if (rc) return rc;
    pasm_dataset ds;
    memset(&ds, 0, sizeof ds);
    pasm_scorer sc = {0};
    pasm_mined_writer *w = NULL;
    char *settings = NULL, sha[65];
    pasm_status st = PASM_OK;
    if ((rc = cli_load_data_for_model(CMD, a->data, a->split, &meta, 0, &ds))) goto done;
    pasm_net_free(net);
    net = NULL;
    pasm_model_meta_free(&meta);
    int batch = a->attack.attack_batch < ds.n ? a->attack.attack_batch : ds.n;
    /* de, random and cam query probabilities (and cam maps); grad and iter need
     * input gradients */
    pasm_net_mode mode = a->attack.kind == PASM_ATTACK_GRAD || a->attack.kind == PASM_ATTACK_ITER
                             ? PASM_NET_EVAL_GRAD
                             : PASM_NET_EVAL;
    const cli_model_options mo = {.device = a->device, .precision = a->precision};
    if ((rc = cli_load_model(CMD, a->model, &mo, batch, mode, &net, &meta))) {
        memset(&meta, 0, sizeof meta);
        goto done;
    }
    if (!ds.labelled) {
        rc = cli_usage_error(CMD, "%s has no labels: mining needs the true class", a->data);
        goto done;
    }
    const int side = a->side ? a->side : meta.net.input_size / 4;
    if ((st = pasm_sha256_file(a->model, sha))) goto done;
    settings = settings_json(a, sha, ds.n, side, meta.net.input_size);
    int done_rows = 0;
    if ((st = pasm_mined_writer_open(&w, a->out, settings, a->overwrite, &done_rows))) goto done;
    if (done_rows > ds.n) {
        st = pasm_errorf(PASM_ERR_FORMAT, "%s has %d rows for %d images", a->out, done_rows, ds.n);
        goto done;
    }
    if ((st = pasm_scorer_net(&sc, net, meta.norm_mean, meta.norm_std))) goto done;
    printf("mining %d images of %s with %s%s\n", ds.n, ds.source ? ds.source : a->data,
           pasm_attack_name(a->attack.kind), done_rows ? " (resuming)" : "");
    if (done_rows) printf("%d images already mined in %s\n", done_rows, a->out);
    fflush(stdout);
    if ((st = mine_chunks(a, &sc, &ds, w, done_rows))) goto done;
    st = pasm_mined_writer_finish(w);
    w = NULL;
    if (!st) report(a, &ds, side);
done:
    pasm_mined_writer_close(w);
    pasm_scorer_net_free(&sc);
    free(settings);
    pasm_dataset_free(&ds);
    pasm_model_meta_free(&meta);
    pasm_net_free(net);
    if (st == PASM_ERR_INTERRUPTED) {
        fprintf(stderr, "pasm mine: %s\n", pasm_last_error());
        return EXIT_FAIL;
    }
    return st ? cli_fail(CMD, st) : rc;
}

int pasm_cmd_mine(int argc, char **argv) {
    enum { O_MODEL = 256, O_DATA, O_SPLIT, O_ATTACK, O_POP, O_GENS, O_F, O_NO_EARLY, O_ITER,
           O_BATCH, O_SEED, O_SIDE, O_GALLERY, O_OUT, O_OVERWRITE, O_THREADS, O_STOP, O_DEVICE, O_PRECISION, O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"split", required_argument, 0, O_SPLIT}, {"attack", required_argument, 0, O_ATTACK},
        {"de-pop", required_argument, 0, O_POP}, {"de-gens", required_argument, 0, O_GENS},
        {"de-f", required_argument, 0, O_F}, {"no-de-early-stop", no_argument, 0, O_NO_EARLY},
        {"iter-max", required_argument, 0, O_ITER},
        {"attack-batch", required_argument, 0, O_BATCH}, {"seed", required_argument, 0, O_SEED},
        {"side", required_argument, 0, O_SIDE}, {"gallery", required_argument, 0, O_GALLERY},
        {"out", required_argument, 0, O_OUT}, {"overwrite", no_argument, 0, O_OVERWRITE},
        {"threads", required_argument, 0, O_THREADS},
        {"stop-after-images", required_argument, 0, O_STOP},
        {"device", required_argument, 0, O_DEVICE}, {"help", no_argument, 0, O_HELP},
        {"precision", required_argument, 0, O_PRECISION},
        {0, 0, 0, 0}};
    cli_mine_args a;
    cli_mine_defaults(&a);
    int threads = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int ok = 1;
        pasm_status st;
        switch (c) {
        case O_MODEL: a.model = optarg; break;
        case O_DATA: a.data = optarg; break;
        case O_SPLIT: a.split = optarg; break;
        case O_ATTACK:
            if ((st = pasm_attack_parse(optarg, &a.attack.kind))) return cli_fail(CMD, st);
            break;
        case O_POP: ok = cli_int(CMD, "--de-pop", optarg, 4, 100000, &a.attack.de_pop); break;
        case O_GENS: ok = cli_int(CMD, "--de-gens", optarg, 0, 100000, &a.attack.de_gens); break;
        case O_F: ok = cli_float(CMD, "--de-f", optarg, 1e-6, 2, &a.attack.de_f); break;
        case O_NO_EARLY: a.attack.de_early_stop = 0; break;
        case O_ITER: ok = cli_int(CMD, "--iter-max", optarg, 1, 100000, &a.attack.iter_max); break;
        case O_BATCH: ok = cli_int(CMD, "--attack-batch", optarg, 1, 65536, &a.attack.attack_batch); break;
        case O_SEED: ok = cli_u64(CMD, "--seed", optarg, &a.attack.seed); break;
        case O_SIDE: ok = cli_int(CMD, "--side", optarg, 1, 4096, &a.side); break;
        case O_GALLERY: a.gallery = optarg; break;
        case O_OUT: a.out = optarg; break;
        case O_OVERWRITE: a.overwrite = 1; break;
        case O_THREADS: ok = cli_int(CMD, "--threads", optarg, 0, 1024, &threads); break;
        case O_STOP: ok = cli_int(CMD, "--stop-after-images", optarg, 0, 1 << 30, &a.stop_after_images); break;
        case O_DEVICE: {
            int rc = cli_device(CMD, optarg, &a.device);
            if (rc) return rc;
            break;
        }
        case O_PRECISION: ok = cli_precision(CMD, optarg, &a.precision); break;
        case O_HELP: usage(stdout); return EXIT_OK;
        default: return cli_usage_error(CMD, "unknown or incomplete option");
        }
        if (!ok) return EXIT_USAGE;
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!a.model || !a.data || !a.out)
        return cli_usage_error(CMD, "--model, --data and --out are required");
    cli_threads(threads);
    return cli_mine_run(&a);
}
