/* Painting one synthetic face, back to front: background, neck and shirt,
 * hair behind the head, ears, head, hair in front, nose; then the expression
 * layers (eyes, brows, mouth), each tracked into its region box; then glasses,
 * a hand, lighting and noise. Nothing before or after the expression layers
 * reads the expression, so classes of one identity differ only where those
 * layers touched. */
#include <math.h>

#include "data/synth_internal.h"

/* ---- shapes only faces need ---- */

/* A box with rounded corners. */
typedef struct {
    float cx, cy, hx, hy, radius;
} round_box;

static float round_box_sdf(const void *shape, float u, float v) {
    const round_box *b = shape;
    float qx = fabsf(u - b->cx) - (b->hx - b->radius), qy = fabsf(v - b->cy) - (b->hy - b->radius);
    float outside = synth_length(fmaxf(qx, 0.0f), fmaxf(qy, 0.0f));
    return outside + fminf(fmaxf(qx, qy), 0.0f) - b->radius;
}

static synth_rect round_box_bounds(const round_box *b) {
    return (synth_rect){b->cx - b->hx, b->cy - b->hy, b->cx + b->hx, b->cy + b->hy};
}

/* The head: an ellipse whose lower half narrows toward the jaw. */
typedef struct {
    float cx, cy, rx, ry, taper;
} head_shape;

static float head_sdf(const void *shape, float u, float v) {
    const head_shape *h = shape;
    float t = fmaxf((v - h->cy) / h->ry, 0.0f);
    synth_ellipse e = {h->cx, h->cy, h->rx * (1.0f - h->taper * t * t), h->ry, 1.0f, 0.0f};
    return synth_ellipse_sdf(&e, u, v);
}

static synth_rect head_bounds(const head_shape *h) {
    return (synth_rect){h->cx - h->rx, h->cy - h->ry, h->cx + h->rx, h->cy + h->ry};
}

/* Hair on the head: inside an enlarged head, above a hairline that drops
 * toward the temples. */
typedef struct {
    head_shape outer;
    float hairline, temple_drop, part, sweep;
} hair_shape;

static float hair_front_sdf(const void *shape, float u, float v) {
    const hair_shape *h = shape;
    float x = fabsf(u - h->outer.cx) / h->outer.rx;
    float dip = 0.04f * expf(-(u - h->part) * (u - h->part) * 60.0f);
    /* sweep tilts the fringe so one side hangs lower. */
    float line = h->hairline + h->temple_drop * x * x * x - dip + h->sweep * (u - h->outer.cx);
    return fmaxf(head_sdf(&h->outer, u, v), v - line);
}

/* A ring around an ellipse (glasses frames). */
typedef struct {
    synth_ellipse e;
    float half_width;
} ring_shape;

static float ring_sdf(const void *shape, float u, float v) {
    const ring_shape *r = shape;
    return fabsf(synth_ellipse_sdf(&r->e, u, v)) - r->half_width;
}

/* ---- tones ---- */

static float skin_tone(const void *ctx, float u, float v) {
    const synth_identity *id = ctx;
    float x = (u - id->cx) / id->rx, y = (v - id->cy) / id->ry;
    /* Darker toward the outline, as a lit sphere. */
    return id->skin * (1.0f - id->shade * fminf(x * x + y * y, 1.2f));
}

static float hair_tone(const void *ctx, float u, float v) {
    const synth_identity *id = ctx;
    /* Fine strands plus a soft sheen across the crown. */
    float crown = (v - (id->cy - id->ry * 0.7f)) / 0.15f;
    return id->hair_tone * (1.0f + 0.12f * expf(-crown * crown)) +
           4.0f * sinf(id->hair_freq * u + 2.5f * sinf(6.0f * v + id->hair_phase));
}

/* ---- helpers ---- */

static void paint(synth_canvas *c, synth_sdf sdf, const void *shape, synth_rect bounds, float tone,
                  float opacity, pasm_synth_box *touched) {
    synth_layer layer = {sdf, shape, bounds, tone, NULL, NULL, opacity};
    synth_paint(c, &layer, touched);
}

static void paint_toned(synth_canvas *c, synth_sdf sdf, const void *shape, synth_rect bounds,
                        synth_tone tone, const void *ctx, pasm_synth_box *touched) {
    synth_layer layer = {sdf, shape, bounds, 0.0f, tone, ctx, 1.0f};
    synth_paint(c, &layer, touched);
}

static void paint_ellipse(synth_canvas *c, synth_ellipse e, float tone, float opacity,
                          pasm_synth_box *touched) {
    paint(c, synth_ellipse_sdf, &e, synth_ellipse_bounds(&e), tone, opacity, touched);
}

static void paint_stroke(synth_canvas *c, const synth_stroke *s, float tone, float opacity,
                         pasm_synth_box *touched) {
    paint(c, synth_stroke_sdf, s, synth_stroke_bounds(s), tone, opacity, touched);
}

static void paint_polygon(synth_canvas *c, const synth_polygon *p, float tone, float opacity,
                          pasm_synth_box *touched) {
    paint(c, synth_polygon_sdf, p, synth_polygon_bounds(p), tone, opacity, touched);
}

/* Paints a shape (inside `bounds`) clipped to a polygon. */
static void paint_clipped(synth_canvas *c, synth_sdf sdf, const void *shape, synth_rect bounds,
                          const synth_polygon *clip, float tone, pasm_synth_box *touched) {
    synth_combo combo = {sdf, shape, synth_polygon_sdf, clip, SYNTH_INTERSECT};
    synth_rect b = synth_polygon_bounds(clip);
    b.u0 = fmaxf(b.u0, bounds.u0), b.v0 = fmaxf(b.v0, bounds.v0);
    b.u1 = fminf(b.u1, bounds.u1), b.v1 = fminf(b.v1, bounds.v1);
    if (b.u1 < b.u0 || b.v1 < b.v0) return;
    paint(c, synth_combo_sdf, &combo, b, tone, 1.0f, touched);
}

/* ---- identity layers ---- */

static void paint_background(synth_canvas *c, const synth_identity *id) {
    float dx = cosf(id->bg_dir), dy = sinf(id->bg_dir);
    for (int py = 0; py < c->size; py++)
        for (int px = 0; px < c->size; px++) {
            float x = ((float)px + 0.5f) * 2.0f / (float)c->size - 1.0f;
            float y = ((float)py + 0.5f) * 2.0f / (float)c->size - 1.0f;
            c->img[py * c->size + px] = id->bg + id->bg_grad * (x * dx + y * dy);
        }
}

static void paint_body(synth_canvas *c, const synth_identity *id) {
    round_box neck = {id->cx, id->cy + id->ry + 0.2f, id->rx * 0.5f, 0.5f, 0.1f};
    paint(c, round_box_sdf, &neck, round_box_bounds(&neck), id->skin * 0.75f, 1.0f, NULL);
    paint_ellipse(c, synth_make_ellipse(id->cx, id->cy + id->ry + 0.75f, id->rx * 2.4f, 0.6f, 0.0f),
                  id->shirt_tone, 1.0f, NULL);
}

static head_shape head_of(const synth_identity *id, float grow) {
    return (head_shape){id->cx, id->cy - grow * 0.4f, id->rx + grow, id->ry + grow * 0.6f,
                        id->taper};
}

static void paint_hair_back(synth_canvas *c, const synth_identity *id) {
    if (id->hair_style == 3) return;
    head_shape outer = head_of(id, id->hair_volume);
    if (id->hair_style == 1) {
        /* Long hair falls behind the head to the shoulders. */
        round_box fall = {id->cx, id->cy + id->ry * 0.45f, id->rx + id->hair_volume, id->ry * 0.85f,
                          0.15f};
        synth_combo both = {head_sdf, &outer, round_box_sdf, &fall, SYNTH_UNION};
        synth_rect b = round_box_bounds(&fall);
        b.v0 = id->cy - id->ry - id->hair_volume;
        paint_toned(c, synth_combo_sdf, &both, b, hair_tone, id, NULL);
        return;
    }
    /* Short hair: the enlarged head above the ears. */
    round_box above = {id->cx, id->eye_y - 1.0f, 2.0f, 1.0f, 0.0f};
    synth_combo cut = {head_sdf, &outer, round_box_sdf, &above, SYNTH_INTERSECT};
    paint_toned(c, synth_combo_sdf, &cut, head_bounds(&outer), hair_tone, id, NULL);
}

static void paint_head(synth_canvas *c, const synth_identity *id) {
    if (id->ears) {
        float ear_y = 0.5f * (id->eye_y + id->nose_y),
              ear_ry = 0.45f * (id->nose_y - id->eye_y) + 0.04f;
        for (int side = -1; side <= 1; side += 2) {
            float ear_x = id->cx + side * id->rx * 0.97f;
            paint_ellipse(c, synth_make_ellipse(ear_x, ear_y, id->rx * 0.16f, ear_ry, 0.0f),
                          id->skin * 0.85f, 1.0f, NULL);
            paint_ellipse(c,
                          synth_make_ellipse(ear_x + side * 0.03f, ear_y, id->rx * 0.06f,
                                             ear_ry * 0.6f, 0.0f),
                          id->skin * 0.6f, 0.6f, NULL);
        }
    }
    head_shape head = head_of(id, 0.0f);
    paint_toned(c, head_sdf, &head, head_bounds(&head), skin_tone, id, NULL);
}

static void paint_hair_front(synth_canvas *c, const synth_identity *id) {
    hair_shape hair = {head_of(id, id->hair_style == 3 ? 0.012f : id->hair_volume), id->hairline,
                       id->temple_drop, id->cx + id->hair_part * id->rx, id->hair_sweep};
    if (id->hair_style == 2) hair.temple_drop *= 0.4f; /* bangs: a straight fringe */
    synth_rect b = head_bounds(&hair.outer);
    b.v1 = id->eye_y + id->temple_drop;
    if (id->hair_style == 3) {
        paint(c, hair_front_sdf, &hair, b, 0.5f * (id->hair_tone + id->skin), 0.5f, NULL);
        return;
    }
    paint_toned(c, hair_front_sdf, &hair, b, hair_tone, id, NULL);
}

static void paint_nose(synth_canvas *c, const synth_identity *id) {
    float x = id->cx, w = id->nose_w, s = id->nose_side;
    synth_stroke bridge = {0};
    synth_stroke_add(&bridge, x + s * w * 0.3f, id->eye_y + 0.04f, 0.012f);
    synth_stroke_add(&bridge, x + s * w * 0.45f, id->nose_y - 0.06f, 0.02f);
    synth_stroke_add(&bridge, x + s * w * 0.7f, id->nose_y, 0.022f);
    paint_stroke(c, &bridge, id->skin * 0.6f, 0.35f, NULL);
    synth_stroke tip = {0};
    synth_stroke_add(&tip, x - w * 0.6f, id->nose_y + 0.01f, 0.012f);
    synth_stroke_add(&tip, x, id->nose_y + 0.045f, 0.016f);
    synth_stroke_add(&tip, x + w * 0.6f, id->nose_y + 0.01f, 0.012f);
    paint_stroke(c, &tip, id->skin * 0.55f, 0.35f, NULL);
    for (int side = -1; side <= 1; side += 2)
        paint_ellipse(c,
                      synth_make_ellipse(x + side * w * 0.42f, id->nose_y + 0.025f, w * 0.22f,
                                         w * 0.12f, side * 0.3f),
                      id->skin * 0.35f, 0.8f, NULL);
}

/* ---- expression layers ---- */

/* The almond of one eye at an opening, its upper and lower lid lines. */
static void eye_outline(const synth_identity *id, float open, int side, synth_polygon *almond,
                        synth_stroke *upper, synth_stroke *lower) {
    enum { N = 12 };
    float ex = id->cx + side * id->eye_dx, ey = id->eye_y, w = id->eye_w;
    float up = id->eye_h * open, down = id->eye_h * (0.5f + 0.3f * open);
    float lid = id->rx * 0.03f;
    for (int i = 0; i < N; i++) {
        float t = -1.0f + 2.0f * (float)i / (float)(N - 1),
              f = powf(fmaxf(1.0f - t * t, 0.0f), 0.7f);
        synth_polygon_add(almond, ex + w * t, ey - up * f);
        synth_stroke_add(upper, ex + w * t, ey - up * f, lid * (0.6f + 0.5f * f));
    }
    for (int i = N - 1; i >= 0; i--) {
        float t = -1.0f + 2.0f * (float)i / (float)(N - 1),
              f = powf(fmaxf(1.0f - t * t, 0.0f), 0.8f);
        if (i > 0 && i < N - 1) synth_polygon_add(almond, ex + w * t, ey + down * f);
        synth_stroke_add(lower, ex + w * t, ey + down * f, lid * 0.6f);
    }
}

static void paint_eye(synth_canvas *c, const synth_identity *id, const synth_expression *e,
                      int side, pasm_synth_box *box) {
    synth_polygon almond = {0};
    synth_stroke upper = {0}, lower = {0};
    eye_outline(id, e->eye_open, side, &almond, &upper, &lower);
    paint_polygon(c, &almond, id->sclera_tone, 1.0f, box);
    float ix = id->cx + side * id->eye_dx + id->gaze_x * id->eye_w;
    float iy = id->eye_y + (id->gaze_y - 0.1f) * id->eye_h;
    synth_ellipse iris = synth_make_ellipse(ix, iy, id->iris_r, id->iris_r, 0.0f);
    paint_clipped(c, synth_ellipse_sdf, &iris, synth_ellipse_bounds(&iris), &almond, id->iris_tone,
                  box);
    synth_ellipse pupil = synth_make_ellipse(ix, iy, id->iris_r * 0.45f, id->iris_r * 0.45f, 0.0f);
    paint_clipped(c, synth_ellipse_sdf, &pupil, synth_ellipse_bounds(&pupil), &almond, 10.0f, box);
    paint_stroke(c, &lower, id->lid_tone, 0.35f, box);
    paint_stroke(c, &upper, id->lid_tone, 1.0f, box);
}

/* min(y, limit) with a rounded knee of width `knee`, so brows near the limit
 * still move a little. */
static float soft_min(float y, float limit, float knee) {
    return limit - knee * log1pf(expf((limit - y) / knee));
}

static void paint_brow(synth_canvas *c, const synth_identity *id, const synth_expression *e,
                       int side, pasm_synth_box *box) {
    enum { N = 8 };
    float R = id->rx, base = id->eye_y - id->brow_gap;
    float x_in = id->brow_in - e->brow_pull * R, x_out = id->brow_out;
    /* However low a frown pulls them, brows stay above the eyes. */
    float floor_y = id->eye_y - id->eye_h - 0.6f * id->brow_thick;
    float y_in = soft_min(base + (e->brow_raise + e->brow_inner) * R, floor_y, 0.02f * R);
    float y_out = soft_min(base + (e->brow_raise + e->brow_outer) * R, floor_y, 0.02f * R);
    float arch = id->brow_arch + e->brow_arch * R;
    synth_stroke brow = {0};
    for (int i = 0; i < N; i++) {
        float t = (float)i / (float)(N - 1);
        float x = id->cx + side * (x_in + (x_out - x_in) * t);
        float y = y_in + (y_out - y_in) * t - arch * sinf(3.14159265f * powf(t, 0.8f));
        synth_stroke_add(&brow, x, y, id->brow_thick * (1.0f - 0.45f * t));
    }
    paint_stroke(c, &brow, id->brow_tone, 1.0f, box);
}

/* The mouth's curves at t in [-1, 1] (corner to corner). */
typedef struct {
    float x0, y0, half_width, curve, open, raise, side;
} mouth_geometry;

static float mouth_mid(const mouth_geometry *m, float t) {
    /* A raised lip also pulls its side of the mouth up: the sneer is lopsided. */
    return m->y0 + m->curve * (1.0f / 3.0f - t * t) - 0.5f * m->raise * fmaxf(m->side * t, 0.0f);
}

static float mouth_profile(float t) { return sqrtf(fmaxf(1.0f - t * t, 0.0f)); }

static float mouth_upper(const mouth_geometry *m, float t) {
    float d = (t - m->side * 0.5f) / 0.45f, s = mouth_profile(t);
    return mouth_mid(m, t) - 0.35f * m->open * s - m->raise * expf(-d * d) * sqrtf(s);
}

static float mouth_lower(const mouth_geometry *m, float t) {
    return mouth_mid(m, t) + 0.65f * m->open * mouth_profile(t);
}

enum { MOUTH_N = 16 };

static float mouth_t(int i) { return -1.0f + 2.0f * (float)i / (float)(MOUTH_N - 1); }

static void paint_lips(synth_canvas *c, const synth_identity *id, const mouth_geometry *m,
                       float thick, pasm_synth_box *box) {
    synth_polygon lips = {0};
    for (int i = 0; i < MOUTH_N; i++) {
        float t = mouth_t(i);
        synth_polygon_add(&lips, m->x0 + m->half_width * 1.06f * t,
                          mouth_upper(m, t) - id->lip_up * thick * sqrtf(mouth_profile(t)));
    }
    for (int i = MOUTH_N - 2; i > 0; i--) {
        float t = mouth_t(i);
        synth_polygon_add(&lips, m->x0 + m->half_width * 1.06f * t,
                          mouth_lower(m, t) + id->lip_lo * thick * sqrtf(mouth_profile(t)));
    }
    paint_polygon(c, &lips, id->lip_tone, 0.85f, box);
}

static void paint_opening(synth_canvas *c, const synth_identity *id, const mouth_geometry *m,
                          float teeth, pasm_synth_box *box) {
    synth_polygon hole = {0}, band = {0};
    for (int i = 0; i < MOUTH_N; i++)
        synth_polygon_add(&hole, m->x0 + m->half_width * mouth_t(i), mouth_upper(m, mouth_t(i)));
    for (int i = MOUTH_N - 2; i > 0; i--)
        synth_polygon_add(&hole, m->x0 + m->half_width * mouth_t(i), mouth_lower(m, mouth_t(i)));
    paint_polygon(c, &hole, id->mouth_tone, 1.0f, box);
    if (teeth <= 0.05f || m->open + m->raise < 0.03f) return;
    /* Upper teeth: a band under the upper lip, clipped to the opening. */
    for (int i = 0; i < MOUTH_N; i++)
        synth_polygon_add(&band, m->x0 + m->half_width * mouth_t(i),
                          mouth_upper(m, mouth_t(i)) - 0.02f);
    for (int i = MOUTH_N - 1; i >= 0; i--) {
        float t = mouth_t(i);
        synth_polygon_add(&band, m->x0 + m->half_width * t,
                          mouth_upper(m, t) +
                              (0.45f * m->open + m->raise) * teeth * mouth_profile(t));
    }
    paint_clipped(c, synth_polygon_sdf, &band, synth_polygon_bounds(&band), &hole, id->sclera_tone,
                  box);
}

/* Smile lines beside the corners and, for a raised lip, the crease from the
 * nose wing down to it: both part of the mouth's evidence. */
static void paint_creases(synth_canvas *c, const synth_identity *id, const mouth_geometry *m,
                          const synth_expression *e, pasm_synth_box *box) {
    float smile = fminf(fmaxf((e->mouth_curve - 0.06f) / 0.1f, 0.0f), 1.0f);
    float r = id->rx * 0.02f;
    for (int side = -1; side <= 1 && smile > 0.0f; side += 2) {
        float cx = m->x0 + side * m->half_width * 1.12f, cy = mouth_mid(m, 1.0f);
        synth_stroke s = {0};
        synth_stroke_add(&s, cx - side * 0.01f, cy - 0.06f, r * 0.5f);
        synth_stroke_add(&s, cx + side * 0.025f, cy, r);
        synth_stroke_add(&s, cx, cy + 0.06f, r * 0.5f);
        paint_stroke(c, &s, id->skin * 0.55f, 0.6f * smile, box);
    }
    float sneer = fminf(e->lip_raise / 0.1f, 1.0f);
    if (sneer <= 0.05f) return;
    synth_stroke s = {0};
    float nx = id->cx + m->side * id->nose_w * 0.75f;
    synth_stroke_add(&s, nx, id->nose_y, r * 0.6f);
    synth_stroke_add(&s, nx + m->side * 0.05f, 0.5f * (id->nose_y + m->y0), r);
    synth_stroke_add(&s, m->x0 + m->side * m->half_width * 1.1f, m->y0 + 0.02f, r * 0.6f);
    paint_stroke(c, &s, id->skin * 0.5f, 0.7f * sneer, box);
}

static void paint_mouth(synth_canvas *c, const synth_identity *id, const synth_expression *e,
                        int lip_side, pasm_synth_box *box) {
    float R = id->rx;
    mouth_geometry m = {id->cx,
                        id->mouth_y,
                        id->mouth_w * e->mouth_width,
                        e->mouth_curve * R,
                        fmaxf(e->mouth_open * R, 0.035f * R),
                        e->lip_raise * R,
                        (float)lip_side};
    paint_creases(c, id, &m, e, box);
    paint_lips(c, id, &m, e->lip_thick, box);
    paint_opening(c, id, &m, e->teeth, box);
}

/* ---- occluders, light, noise ---- */

static void paint_glasses(synth_canvas *c, const synth_identity *id) {
    if (!id->glasses) return;
    float ey = id->eye_y - 0.01f, half = id->glass_thick * 0.5f;
    for (int side = -1; side <= 1; side += 2) {
        synth_ellipse lens =
            synth_make_ellipse(id->cx + side * id->eye_dx, ey, id->glass_a, id->glass_b, 0.0f);
        if (id->glasses == 2)
            paint_ellipse(c, lens, 20.0f, 0.85f, NULL);
        else
            paint_ellipse(c, lens, 235.0f, 0.12f, NULL);
        ring_shape ring = {lens, half};
        paint(c, ring_sdf, &ring, synth_rect_grow(synth_ellipse_bounds(&lens), half),
              id->glass_tone, 1.0f, NULL);
        synth_stroke arm = {0};
        synth_stroke_add(&arm, id->cx + side * (id->eye_dx + id->glass_a), ey - 0.02f, half);
        synth_stroke_add(&arm, id->cx + side * id->rx * 0.99f, ey - 0.04f, half);
        paint_stroke(c, &arm, id->glass_tone, 1.0f, NULL);
    }
    synth_stroke bridge = {0};
    synth_stroke_add(&bridge, id->cx - id->eye_dx + id->glass_a, ey - 0.01f, half);
    synth_stroke_add(&bridge, id->cx, ey - 0.05f, half);
    synth_stroke_add(&bridge, id->cx + id->eye_dx - id->glass_a, ey - 0.01f, half);
    paint_stroke(c, &bridge, id->glass_tone, 1.0f, NULL);
}

static void paint_hand(synth_canvas *c, const synth_identity *id) {
    if (!id->hand) return;
    /* d points along the fingers (up and toward the face's middle), p across. */
    float s = (float)id->hand_side, a = id->hand_angle;
    float dx = -s * sinf(a), dy = -cosf(a), qx = -dy, qy = dx;
    float len = id->hand_len, r = id->hand_r, outline = id->hand_tone * 0.72f, edge = 0.01f;
    float palm_x = id->hand_x - dx * (len + r * 2.5f), palm_y = id->hand_y - dy * (len + r * 2.5f);
    synth_ellipse palm = synth_make_ellipse(palm_x, palm_y, r * 4.6f, len * 0.8f, atan2f(qy, qx));
    synth_ellipse palm_edge = palm;
    palm_edge.rx += edge, palm_edge.ry += edge;
    paint_ellipse(c, palm_edge, outline, 1.0f, NULL);
    paint_ellipse(c, palm, id->hand_tone, 1.0f, NULL);
    static const float lengths[4] = {0.8f, 1.0f, 0.95f, 0.75f};
    for (int i = 0; i < 4; i++) {
        float off = ((float)i - 1.5f) * 2.1f * r * s, l = len * lengths[i];
        float tip_x = id->hand_x + qx * off - dx * (len - l),
              tip_y = id->hand_y + qy * off - dy * (len - l);
        synth_stroke finger = {0};
        synth_stroke_add(&finger, tip_x - dx * (l + r * 2.0f), tip_y - dy * (l + r * 2.0f),
                         r + edge);
        synth_stroke_add(&finger, tip_x, tip_y, r * 0.9f + edge);
        paint_stroke(c, &finger, outline, 1.0f, NULL);
        for (int k = 0; k < 2; k++) finger.r[k] -= edge;
        paint_stroke(c, &finger, id->hand_tone, 1.0f, NULL);
    }
}

/* Pixel noise: the sum of four random bytes is close to normal (Irwin-Hall)
 * and costs a quarter of a Philox block instead of a full block, a log and a
 * cosine per pixel. */
static float byte_noise(pasm_rng *noise) {
    uint32_t bits = pasm_rng_u32(noise);
    float sum =
        (float)((bits & 255u) + ((bits >> 8) & 255u) + ((bits >> 16) & 255u) + (bits >> 24));
    return (sum - 510.0f) * (1.0f / 147.8f); /* mean 0, standard deviation 1 */
}

static void paint_light_and_noise(synth_canvas *c, const synth_identity *id, pasm_rng *noise) {
    float lx = cosf(id->light_dir), ly = sinf(id->light_dir);
    for (int py = 0; py < c->size; py++)
        for (int px = 0; px < c->size; px++) {
            float x = ((float)px + 0.5f) * 2.0f / (float)c->size - 1.0f;
            float y = ((float)py + 0.5f) * 2.0f / (float)c->size - 1.0f;
            float *p = &c->img[py * c->size + px];
            *p = *p * id->brightness * (1.0f + id->light * (x * lx + y * ly)) +
                 id->noise_sd * byte_noise(noise);
        }
}

void synth_paint_face(synth_canvas *c, const synth_identity *id, const synth_expression *e,
                      int lip_side, pasm_rng *noise, pasm_synth_regions *regions) {
    pasm_synth_box *box = regions->box;
    for (int i = 0; i < PASM_SYNTH_N_REGIONS; i++)
        box[i] = (pasm_synth_box){c->size, c->size, 0, 0};
    paint_background(c, id);
    paint_body(c, id);
    paint_hair_back(c, id);
    paint_head(c, id);
    paint_hair_front(c, id);
    paint_nose(c, id);
    paint_eye(c, id, e, -1, &box[PASM_SYNTH_LEFT_EYE]);
    paint_eye(c, id, e, 1, &box[PASM_SYNTH_RIGHT_EYE]);
    paint_brow(c, id, e, -1, &box[PASM_SYNTH_LEFT_BROW]);
    paint_brow(c, id, e, 1, &box[PASM_SYNTH_RIGHT_BROW]);
    paint_mouth(c, id, e, lip_side, &box[PASM_SYNTH_MOUTH]);
    paint_glasses(c, id);
    paint_hand(c, id);
    paint_light_and_noise(c, id, noise);
    for (int i = 0; i < PASM_SYNTH_N_REGIONS; i++)
        if (box[i].x1 <= box[i].x0 || box[i].y1 <= box[i].y0) box[i] = (pasm_synth_box){0, 0, 0, 0};
}
