/* Synthetic grey faces for checking PASM against ground truth. A face is an
 * identity (head shape, skin, hair, pose, light, noise, glasses, a hand), drawn
 * from one RNG stream keyed by (seed, index), and an expression (mouth, brows,
 * eyes), drawn from another around FER2013 class prototypes. The expression is
 * painted only inside the mouth, brow and eye layers, whose touched pixels are
 * the regions, so two classes of one identity differ only inside them. */
#include <math.h>
#include <string.h>

#include "data/synth_internal.h"

/* Counter `b` of the RNG streams of one face (a = the face index). */
enum { STREAM_IDENTITY = 0, STREAM_EXPRESSION = 1, STREAM_NOISE = 2 };

static const char *const class_names[PASM_SYNTH_N_CLASSES] = {
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"};
static const char *const region_names[PASM_SYNTH_N_REGIONS] = {"mouth", "left_brow", "right_brow",
                                                               "left_eye", "right_eye"};

const char *pasm_synth_class_name(int cls) {
    return cls >= 0 && cls < PASM_SYNTH_N_CLASSES ? class_names[cls] : NULL;
}

const char *pasm_synth_region_name(int region) {
    return region >= 0 && region < PASM_SYNTH_N_REGIONS ? region_names[region] : NULL;
}

void pasm_synth_options_default(pasm_synth_options *o) {
    o->count = 2100;
    o->size = 48;
    o->seed = 1;
    o->ambiguous_fraction = 0.12f;
    o->glasses_fraction = 0.2f;
    o->hand_fraction = 0.1f;
}

/* ---- expression ---- */

enum { N_EXPRESSION_PARAMS = sizeof(synth_expression) / sizeof(float) };
/* draw_expression walks the parameters as an array of floats. */
_Static_assert(sizeof(synth_expression) == N_EXPRESSION_PARAMS * sizeof(float),
               "synth_expression must hold only floats, unpadded");

static const synth_expression prototypes[PASM_SYNTH_N_CLASSES] = {
    /* angry: brows down and drawn to the centre, narrowed eyes, tight mouth */
    {-0.03f, 0.0f, 0.80f, 0.45f, 0.0f, 0.0f, 0.07f, 0.11f, -0.06f, 0.07f, -0.02f, 0.55f},
    /* disgust: one side of the upper lip raised, brows lowered, eyes narrowed */
    {-0.06f, 0.03f, 0.92f, 0.9f, 0.14f, 0.3f, 0.05f, 0.05f, 0.0f, 0.03f, 0.0f, 0.68f},
    /* fear: raised brows drawn together, wide eyes, stretched open mouth */
    {-0.05f, 0.09f, 1.28f, 0.7f, 0.0f, 0.8f, -0.10f, -0.07f, 0.03f, 0.04f, -0.02f, 1.65f},
    /* happy: corners up, often open with teeth, slightly narrowed eyes */
    {0.17f, 0.06f, 1.2f, 0.8f, 0.0f, 1.0f, -0.02f, 0.0f, 0.0f, 0.0f, 0.01f, 0.82f},
    /* sad: corners down, inner brows raised */
    {-0.14f, 0.0f, 0.95f, 1.05f, 0.0f, 0.0f, 0.0f, -0.11f, 0.05f, 0.02f, 0.0f, 0.75f},
    /* surprise: open round mouth, raised arched brows, wide eyes */
    {0.0f, 0.30f, 0.62f, 0.8f, 0.0f, 0.2f, -0.16f, -0.02f, 0.0f, 0.0f, 0.05f, 1.8f},
    /* neutral */
    {0.0f, 0.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f},
};

/* How far each parameter wanders from its prototype (one standard deviation). */
static const synth_expression spreads = {0.03f,  0.02f,  0.07f, 0.1f,   0.02f,  0.2f,
                                         0.025f, 0.025f, 0.02f, 0.015f, 0.015f, 0.12f};

static float uniform(pasm_rng *r, float lo, float hi) {
    return lo + (hi - lo) * pasm_rng_uniform(r);
}

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Every draw happens whatever the class, so the stream is consumed alike. */
static synth_expression draw_expression(pasm_rng *r, int cls, float ambiguous_fraction,
                                        pasm_synth_regions *info, int *lip_side) {
    float u_blend = pasm_rng_uniform(r);
    int other = (cls + 1 + (int)pasm_rng_below(r, PASM_SYNTH_N_CLASSES - 1)) % PASM_SYNTH_N_CLASSES;
    float other_weight = uniform(r, 0.2f, 0.45f);
    float intensity = uniform(r, 0.6f, 1.15f);
    *lip_side = pasm_rng_uniform(r) < 0.5f ? -1 : 1;
    int blended = u_blend < ambiguous_fraction;
    const float *p = (const float *)&prototypes[cls], *q = (const float *)&prototypes[other];
    const float *n = (const float *)&prototypes[PASM_SYNTH_NEUTRAL];
    const float *sd = (const float *)&spreads;
    synth_expression e;
    float *out = (float *)&e;
    for (int i = 0; i < N_EXPRESSION_PARAMS; i++) {
        float mean = blended ? (1.0f - other_weight) * p[i] + other_weight * q[i] : p[i];
        /* Intensity scales the distance from neutral: weak expressions are harder. */
        out[i] = n[i] + intensity * (mean - n[i]) + sd[i] * pasm_rng_normal(r);
    }
    e.mouth_open = fmaxf(e.mouth_open, 0.0f);
    e.mouth_width = clampf(e.mouth_width, 0.45f, 1.5f);
    e.lip_thick = clampf(e.lip_thick, 0.25f, 1.4f);
    e.lip_raise = fmaxf(e.lip_raise, 0.0f);
    e.teeth = clampf(e.teeth, 0.0f, 1.0f);
    e.eye_open = clampf(e.eye_open, 0.3f, 2.2f);
    info->blend_class = blended ? other : -1;
    info->blend_weight = blended ? other_weight : 0.0f;
    return e;
}

/* ---- identity ---- */

static void draw_scene(pasm_rng *r, synth_identity *id) {
    id->angle = clampf(0.1f * pasm_rng_normal(r), -0.26f, 0.26f);
    id->scale = uniform(r, 1.0f, 1.18f);
    id->off_x = uniform(r, -0.07f, 0.07f);
    id->off_y = uniform(r, -0.06f, 0.06f);
    id->bg = uniform(r, 20.0f, 235.0f);
    id->bg_grad = uniform(r, -40.0f, 40.0f);
    id->bg_dir = uniform(r, 0.0f, 6.2832f);
    id->light_dir = uniform(r, 0.0f, 6.2832f);
    id->light = uniform(r, 0.0f, 0.35f);
    id->brightness = uniform(r, 0.8f, 1.12f);
    id->noise_sd = uniform(r, 1.0f, 7.0f);
    id->shirt_tone = uniform(r, 15.0f, 230.0f);
}

static void draw_head(pasm_rng *r, synth_identity *id) {
    id->cx = uniform(r, -0.03f, 0.03f);
    id->cy = uniform(r, 0.04f, 0.12f);
    id->rx = uniform(r, 0.56f, 0.7f);
    id->ry = id->rx * uniform(r, 1.18f, 1.38f);
    id->taper = uniform(r, 0.0f, 0.3f);
    id->skin = uniform(r, 95.0f, 205.0f);
    id->shade = uniform(r, 0.1f, 0.25f);
    id->hair_style = (int)pasm_rng_below(r, 10);
    id->hair_style = id->hair_style < 4 ? 0 : id->hair_style < 7 ? 1 : id->hair_style < 9 ? 2 : 3;
    id->ears = id->hair_style != 1 && pasm_rng_uniform(r) < 0.85f;
    id->hair_tone = uniform(r, 15.0f, 175.0f);
    /* Hair too close to the skin would hide the head's outline. */
    if (fabsf(id->hair_tone - id->skin) < 45.0f)
        id->hair_tone = id->skin > 110.0f ? id->skin - 60.0f : id->skin + 55.0f;
    id->hair_volume = uniform(r, 0.04f, 0.14f);
    id->temple_drop = uniform(r, 0.25f, 0.45f);
    id->hair_part = uniform(r, -0.3f, 0.3f);
    id->hair_sweep = uniform(r, -0.2f, 0.2f);
    id->hair_freq = uniform(r, 60.0f, 90.0f);
    id->hair_phase = uniform(r, 0.0f, 6.2832f);
}

static void draw_features(pasm_rng *r, synth_identity *id) {
    float R = id->rx;
    id->eye_y = id->cy + id->ry * uniform(r, -0.2f, -0.08f);
    id->eye_dx = R * uniform(r, 0.37f, 0.44f);
    id->eye_w = R * uniform(r, 0.17f, 0.21f);
    id->eye_h = id->eye_w * uniform(r, 0.38f, 0.48f);
    id->iris_r = id->eye_h * uniform(r, 1.0f, 1.15f);
    id->gaze_x = uniform(r, -0.25f, 0.25f);
    id->gaze_y = uniform(r, -0.1f, 0.1f);
    id->iris_tone = uniform(r, 25.0f, 95.0f);
    id->sclera_tone = 0.4f * id->skin + 0.6f * uniform(r, 200.0f, 240.0f);
    id->lid_tone = uniform(r, 10.0f, 45.0f);
    id->brow_gap = id->eye_w * uniform(r, 1.0f, 1.3f);
    id->brow_in = id->eye_dx - id->eye_w * uniform(r, 0.85f, 1.05f);
    id->brow_out = id->eye_dx + id->eye_w * uniform(r, 1.0f, 1.3f);
    id->brow_thick = R * uniform(r, 0.045f, 0.07f);
    id->brow_arch = R * uniform(r, 0.0f, 0.06f);
    id->brow_tone = fminf(id->hair_tone, id->skin * 0.5f) + uniform(r, 0.0f, 20.0f);
    id->mouth_y = id->cy + id->ry * uniform(r, 0.42f, 0.52f);
    id->nose_y = id->eye_y + (id->mouth_y - id->eye_y) * uniform(r, 0.55f, 0.65f);
    id->nose_w = R * uniform(r, 0.14f, 0.2f);
    id->nose_side = pasm_rng_uniform(r) < 0.5f ? -1.0f : 1.0f;
    id->mouth_w = R * uniform(r, 0.3f, 0.38f);
    id->lip_tone = id->skin * uniform(r, 0.62f, 0.8f);
    id->lip_up = R * uniform(r, 0.03f, 0.05f);
    id->lip_lo = R * uniform(r, 0.04f, 0.07f);
    id->mouth_tone = uniform(r, 15.0f, 45.0f);
    /* The hairline sits above the brows even when they rise. */
    float brow_top = id->eye_y - id->brow_gap - 0.2f * R;
    id->hairline = fminf(id->cy - id->ry * uniform(r, 0.5f, 0.85f), brow_top);
    if (id->hair_style == 2) id->hairline = brow_top - R * uniform(r, 0.0f, 0.05f);
    /* A swept fringe hangs lower on one side: lift it clear of that brow. */
    id->hairline -= fabsf(id->hair_sweep) * id->brow_out;
}

static void draw_occluders(pasm_rng *r, synth_identity *id, const pasm_synth_options *o) {
    float u_glasses = pasm_rng_uniform(r), u_dark = pasm_rng_uniform(r);
    id->glasses = u_glasses < o->glasses_fraction ? (u_dark < 0.12f ? 2 : 1) : 0;
    id->glass_a = id->eye_w * uniform(r, 1.45f, 1.75f);
    id->glass_b = id->glass_a * uniform(r, 0.7f, 1.0f);
    id->glass_thick = id->rx * uniform(r, 0.03f, 0.055f);
    id->glass_tone = uniform(r, 10.0f, 70.0f);
    id->hand = pasm_rng_uniform(r) < o->hand_fraction;
    id->hand_side = pasm_rng_uniform(r) < 0.5f ? -1 : 1;
    /* The fingertips reach a point on the lower face from below and outside. */
    id->hand_x = id->cx + id->hand_side * id->rx * uniform(r, 0.1f, 0.7f);
    id->hand_y = id->cy + id->ry * uniform(r, 0.25f, 0.75f);
    id->hand_angle = uniform(r, 0.3f, 1.1f);
    id->hand_len = id->rx * uniform(r, 0.45f, 0.6f);
    id->hand_r = id->rx * uniform(r, 0.08f, 0.1f);
    id->hand_tone = id->skin * uniform(r, 0.9f, 1.1f);
}

static void draw_identity(pasm_rng *r, synth_identity *id, const pasm_synth_options *o) {
    draw_scene(r, id);
    draw_head(r, id);
    draw_features(r, id);
    draw_occluders(r, id, o);
}

pasm_status synth_check_options(const pasm_synth_options *o) {
    if (o->size < PASM_SYNTH_MIN_SIZE || o->size > PASM_SYNTH_MAX_SIZE)
        return pasm_errorf(PASM_ERR_INVALID, "synth: size must be %d..%d pixels, got %d",
                           PASM_SYNTH_MIN_SIZE, PASM_SYNTH_MAX_SIZE, o->size);
    const float fractions[3] = {o->ambiguous_fraction, o->glasses_fraction, o->hand_fraction};
    const char *names[3] = {"ambiguous", "glasses", "hand"};
    for (int i = 0; i < 3; i++)
        if (!(fractions[i] >= 0.0f && fractions[i] <= 1.0f))
            return pasm_errorf(PASM_ERR_INVALID, "synth: %s fraction must be in 0..1, got %g",
                               names[i], (double)fractions[i]);
    return PASM_OK;
}

pasm_status pasm_synth_face_opts(const pasm_synth_options *o, uint64_t index, int cls,
                                 uint8_t *pixels, pasm_synth_regions *regions) {
    if (!o || !pixels) return pasm_errorf(PASM_ERR_INVALID, "synth: options or pixels is NULL");
    if (cls < 0 || cls >= PASM_SYNTH_N_CLASSES)
        return pasm_errorf(PASM_ERR_INVALID, "synth: class must be 0..%d, got %d",
                           PASM_SYNTH_N_CLASSES - 1, cls);
    pasm_status st = synth_check_options(o);
    if (st != PASM_OK) return st;
    size_t n = (size_t)o->size * (size_t)o->size;
    float *img = pasm_alloc(n * sizeof(float), "synthetic face canvas");
    if (!img) return PASM_ERR_NOMEM;

    pasm_rng id_rng, expr_rng, noise_rng;
    pasm_rng_init(&id_rng, o->seed, PASM_RNG_SYNTH, index, STREAM_IDENTITY);
    pasm_rng_init(&expr_rng, o->seed, PASM_RNG_SYNTH, index, STREAM_EXPRESSION);
    pasm_rng_init(&noise_rng, o->seed, PASM_RNG_SYNTH, index, STREAM_NOISE);
    synth_identity id;
    draw_identity(&id_rng, &id, o);
    pasm_synth_regions info;
    memset(&info, 0, sizeof info);
    int lip_side;
    synth_expression e = draw_expression(&expr_rng, cls, o->ambiguous_fraction, &info, &lip_side);
    info.glasses = id.glasses;
    info.hand = id.hand;

    synth_canvas canvas;
    synth_canvas_init(&canvas, img, o->size, id.angle, id.scale, id.off_x, id.off_y);
    synth_paint_face(&canvas, &id, &e, lip_side, &noise_rng, &info);
    for (size_t i = 0; i < n; i++) pixels[i] = (uint8_t)clampf(roundf(img[i]), 0.0f, 255.0f);
    if (regions) *regions = info;
    pasm_free(img);
    return PASM_OK;
}

pasm_status pasm_synth_face(uint64_t seed, uint64_t index, int cls, int size, uint8_t *pixels,
                            pasm_synth_regions *regions) {
    pasm_synth_options o;
    pasm_synth_options_default(&o);
    o.seed = seed;
    o.size = size;
    return pasm_synth_face_opts(&o, index, cls, pixels, regions);
}

const char *pasm_synth_split_name(int split) {
    static const char *const names[3] = {"train", "val", "test"};
    return split >= 0 && split < 3 ? names[split] : NULL;
}

pasm_status pasm_synth_assign(int count, int index, int *split, int *cls) {
    if (count < 1 || count > PASM_SYNTH_MAX_COUNT || index < 0 || index >= count)
        return pasm_errorf(PASM_ERR_INVALID, "synth: face %d of %d does not exist", index, count);
    /* 70/15/15 with rounding, in 64 bits so large counts cannot overflow. */
    int n_train = (int)(((int64_t)count * 70 + 50) / 100);
    int n_val = (int)(((int64_t)count * 15 + 50) / 100);
    if (n_train + n_val > count) n_val = count - n_train;
    int s = index < n_train ? 0 : index < n_train + n_val ? 1 : 2;
    int first = s == 0 ? 0 : s == 1 ? n_train : n_train + n_val;
    if (split) *split = s;
    if (cls) *cls = (index - first) % PASM_SYNTH_N_CLASSES;
    return PASM_OK;
}
