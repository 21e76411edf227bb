/* Internal to the synthetic-face generator: the canvas (a float image plus
 * the head pose that maps its pixels to face coordinates) and the shapes it
 * paints, each a signed distance function in face coordinates so edges are
 * anti-aliased from the distance alone. */
#ifndef PASM_DATA_SYNTH_INTERNAL_H
#define PASM_DATA_SYNTH_INTERNAL_H

#include <math.h>

#include "pasm/synth.h"

/* Face coordinates: the image spans [-1, 1] on both axes when the pose is the
 * identity; u grows rightwards, v downwards. */
typedef struct {
    float *img; /* size x size grey levels, 0..255 */
    int size;
    float cos_a, sin_a, scale, off_x, off_y; /* pose: image = off + scale * R(angle) * face */
    float pixel; /* one pixel's width in face units (the anti-aliasing width) */
} synth_canvas;

typedef struct {
    float u0, v0, u1, v1;
} synth_rect;

/* Signed distance from (u, v) to a shape's edge: negative inside. */
typedef float (*synth_sdf)(const void *shape, float u, float v);
/* Grey level of a shape at (u, v) (shading, texture). */
typedef float (*synth_tone)(const void *ctx, float u, float v);

#define SYNTH_MAX_POINTS 48

typedef struct {
    float cx, cy, rx, ry, cos_r, sin_r; /* centre, semi-axes, rotation */
} synth_ellipse;

/* A polyline thickened by a radius that varies linearly along each segment. */
typedef struct {
    int n;
    float x[SYNTH_MAX_POINTS], y[SYNTH_MAX_POINTS], r[SYNTH_MAX_POINTS];
} synth_stroke;

typedef struct {
    int n;
    float x[SYNTH_MAX_POINTS], y[SYNTH_MAX_POINTS];
} synth_polygon;

enum { SYNTH_UNION, SYNTH_INTERSECT, SYNTH_SUBTRACT };

/* Two shapes combined: union min(a, b), intersection max(a, b), a minus b. */
typedef struct {
    synth_sdf a;
    const void *shape_a;
    synth_sdf b;
    const void *shape_b;
    int op;
} synth_combo;

/* One paint call: a shape filled with a tone at an opacity. */
typedef struct {
    synth_sdf sdf;
    const void *shape;
    synth_rect bounds; /* face-space box outside which the shape is empty */
    float tone;        /* constant grey level when tone_fn is NULL */
    synth_tone tone_fn;
    const void *tone_ctx;
    float opacity; /* 0..1 */
} synth_layer;

void synth_canvas_init(synth_canvas *c, float *img, int size, float angle, float scale, float off_x,
                       float off_y);
/* Face coordinates of pixel (px, py)'s centre. */
void synth_pixel_to_face(const synth_canvas *c, int px, int py, float *u, float *v);
/* Composites the layer over the canvas; when touched is not NULL, grows it to
 * every pixel the layer changed (coverage > 0). */
void synth_paint(synth_canvas *c, const synth_layer *layer, pasm_synth_box *touched);

synth_ellipse synth_make_ellipse(float cx, float cy, float rx, float ry, float angle);
float synth_ellipse_sdf(const void *shape, float u, float v);
synth_rect synth_ellipse_bounds(const synth_ellipse *e);

float synth_stroke_sdf(const void *shape, float u, float v);
synth_rect synth_stroke_bounds(const synth_stroke *s);
void synth_stroke_add(synth_stroke *s, float x, float y, float r);

float synth_polygon_sdf(const void *shape, float u, float v);
synth_rect synth_polygon_bounds(const synth_polygon *p);
void synth_polygon_add(synth_polygon *p, float x, float y);

float synth_combo_sdf(const void *shape, float u, float v);

synth_rect synth_rect_grow(synth_rect r, float by);

/* sqrt(x^2 + y^2) without hypotf's overflow care, which our small face
 * coordinates never need and which costs a third of the drawing time. */
static inline float synth_length(float x, float y) { return sqrtf(x * x + y * y); }

/* An expression. Lengths are in units of the head's half-width; brow offsets are positive
 * downwards (face coordinates grow down). */
typedef struct {
    float mouth_curve; /* corner lift: > 0 smile, < 0 frown */
    float mouth_open;  /* height of the opening */
    float mouth_width; /* x the identity's mouth width */
    float lip_thick;   /* x the identity's lip thickness (pressed lips < 1) */
    float lip_raise;   /* one side of the upper lip raised (disgust) */
    float teeth;       /* 0..1: how much of the opening shows teeth */
    float brow_raise;  /* whole brow up (< 0) or down (> 0) */
    float brow_inner;  /* inner end, on top of brow_raise */
    float brow_outer;  /* outer end, on top of brow_raise */
    float brow_pull;   /* inner ends pulled toward the centre */
    float brow_arch;   /* extra arch */
    float eye_open;    /* x the identity's eye opening */
} synth_expression;

/* An identity: everything about a face but its expression. Lengths in face
 * units; tones are grey levels. */
typedef struct {
    float angle, scale, off_x, off_y; /* pose */
    float bg, bg_grad, bg_dir, light_dir, light, brightness, noise_sd;
    float shirt_tone;
    float cx, cy, rx, ry, taper, skin, shade; /* head */
    int ears, hair_style;                     /* 0 short, 1 long, 2 bangs, 3 shaved */
    float hair_tone, hair_volume, hairline, temple_drop, hair_part, hair_sweep, hair_freq;
    float hair_phase;
    float eye_y, eye_dx, eye_w, eye_h, iris_r, gaze_x, gaze_y, iris_tone, sclera_tone, lid_tone;
    float brow_gap, brow_in, brow_out, brow_thick, brow_arch, brow_tone;
    float nose_y, nose_w, nose_side;
    float mouth_y, mouth_w, lip_tone, lip_up, lip_lo, mouth_tone;
    int glasses; /* 0 none, 1 clear, 2 dark */
    float glass_a, glass_b, glass_thick, glass_tone;
    int hand, hand_side;
    float hand_x, hand_y, hand_angle, hand_len, hand_r, hand_tone;
} synth_identity;

/* PASM_OK when size and fractions are in range, else an error naming the bad one. */
pasm_status synth_check_options(const pasm_synth_options *o);

/* Paints the face (identity + expression) on the canvas, whose pose must be
 * the identity's; fills regions->box from the pixels the expression's layers
 * touched. noise: the RNG stream of the per-pixel noise. */
void synth_paint_face(synth_canvas *c, const synth_identity *id, const synth_expression *e,
                      int lip_side, pasm_rng *noise, pasm_synth_regions *regions);

#endif
