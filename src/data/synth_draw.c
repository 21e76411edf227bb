/* The synthetic-face painter: signed distance functions for ellipses,
 * variable-width strokes, polygons and their combinations, and the compositing
 * loop that anti-aliases every edge from the distance (coverage falls from 1
 * to 0 across one pixel), so faces stay smooth at 32x32 without supersampling.
 * Coverage is exactly 0 beyond half a pixel outside a shape, which is what lets
 * the generator know exactly which pixels a feature touched. */
#include <math.h>

#include "data/synth_internal.h"

void synth_canvas_init(synth_canvas *c, float *img, int size, float angle, float scale, float off_x,
                       float off_y) {
    c->img = img;
    c->size = size;
    c->cos_a = cosf(angle);
    c->sin_a = sinf(angle);
    c->scale = scale;
    c->off_x = off_x;
    c->off_y = off_y;
    c->pixel = 2.0f / (float)size / scale;
}

void synth_pixel_to_face(const synth_canvas *c, int px, int py, float *u, float *v) {
    float x = ((float)px + 0.5f) * 2.0f / (float)c->size - 1.0f - c->off_x;
    float y = ((float)py + 0.5f) * 2.0f / (float)c->size - 1.0f - c->off_y;
    /* The inverse of image = off + scale * R(angle) * face. */
    *u = (c->cos_a * x + c->sin_a * y) / c->scale;
    *v = (-c->sin_a * x + c->cos_a * y) / c->scale;
}

/* Pixel range [*lo, *hi) covering image coordinates [a, b], clipped. */
static void pixel_span(const synth_canvas *c, float a, float b, int *lo, int *hi) {
    float half = (float)c->size * 0.5f;
    float p0 = floorf((a + 1.0f) * half - 0.5f) - 1.0f;
    float p1 = ceilf((b + 1.0f) * half - 0.5f) + 2.0f;
    if (p0 < 0.0f) p0 = 0.0f;
    if (p1 > (float)c->size) p1 = (float)c->size;
    *lo = (int)p0;
    *hi = p1 > p0 ? (int)p1 : (int)p0;
}

/* The image-space pixel box that holds a face-space rectangle under the pose. */
static void face_rect_to_pixels(const synth_canvas *c, synth_rect r, int *x0, int *y0, int *x1,
                                int *y1) {
    float us[4] = {r.u0, r.u1, r.u0, r.u1}, vs[4] = {r.v0, r.v0, r.v1, r.v1};
    float min_x = INFINITY, max_x = -INFINITY, min_y = INFINITY, max_y = -INFINITY;
    for (int i = 0; i < 4; i++) {
        float x = c->off_x + c->scale * (c->cos_a * us[i] - c->sin_a * vs[i]);
        float y = c->off_y + c->scale * (c->sin_a * us[i] + c->cos_a * vs[i]);
        min_x = fminf(min_x, x), max_x = fmaxf(max_x, x);
        min_y = fminf(min_y, y), max_y = fmaxf(max_y, y);
    }
    pixel_span(c, min_x, max_x, x0, x1);
    pixel_span(c, min_y, max_y, y0, y1);
}

void synth_paint(synth_canvas *c, const synth_layer *layer, pasm_synth_box *touched) {
    int x0, y0, x1, y1;
    face_rect_to_pixels(c, synth_rect_grow(layer->bounds, c->pixel), &x0, &y0, &x1, &y1);
    float inv_pixel = 1.0f / c->pixel;
    for (int py = y0; py < y1; py++) {
        for (int px = x0; px < x1; px++) {
            float u, v;
            synth_pixel_to_face(c, px, py, &u, &v);
            float cover = 0.5f - layer->sdf(layer->shape, u, v) * inv_pixel;
            if (!(cover > 0.0f)) continue;
            if (cover > 1.0f) cover = 1.0f;
            cover *= layer->opacity;
            if (!(cover > 0.0f)) continue;
            float tone = layer->tone_fn ? layer->tone_fn(layer->tone_ctx, u, v) : layer->tone;
            float *p = &c->img[py * c->size + px];
            *p += cover * (tone - *p);
            if (touched) {
                if (px < touched->x0) touched->x0 = px;
                if (py < touched->y0) touched->y0 = py;
                if (px + 1 > touched->x1) touched->x1 = px + 1;
                if (py + 1 > touched->y1) touched->y1 = py + 1;
            }
        }
    }
}

synth_rect synth_rect_grow(synth_rect r, float by) {
    return (synth_rect){r.u0 - by, r.v0 - by, r.u1 + by, r.v1 + by};
}

synth_ellipse synth_make_ellipse(float cx, float cy, float rx, float ry, float angle) {
    return (synth_ellipse){cx, cy, rx, ry, cosf(angle), sinf(angle)};
}

/* Inigo Quilez's first-order ellipse distance: exact on the edge, a close
 * estimate near it, which is all anti-aliasing needs. */
float synth_ellipse_sdf(const void *shape, float u, float v) {
    const synth_ellipse *e = shape;
    float du = u - e->cx, dv = v - e->cy;
    float x = e->cos_r * du + e->sin_r * dv, y = -e->sin_r * du + e->cos_r * dv;
    float k0 = synth_length(x / e->rx, y / e->ry);
    float k1 = synth_length(x / (e->rx * e->rx), y / (e->ry * e->ry));
    if (k1 < 1e-12f) return -fminf(e->rx, e->ry);
    return k0 * (k0 - 1.0f) / k1;
}

synth_rect synth_ellipse_bounds(const synth_ellipse *e) {
    /* The rotated ellipse's axis-aligned half extents. */
    float c = e->cos_r, s = e->sin_r;
    float hx = sqrtf(e->rx * e->rx * c * c + e->ry * e->ry * s * s);
    float hy = sqrtf(e->rx * e->rx * s * s + e->ry * e->ry * c * c);
    return (synth_rect){e->cx - hx, e->cy - hy, e->cx + hx, e->cy + hy};
}

void synth_stroke_add(synth_stroke *s, float x, float y, float r) {
    if (s->n >= SYNTH_MAX_POINTS) return;
    s->x[s->n] = x, s->y[s->n] = y, s->r[s->n] = r;
    s->n++;
}

float synth_stroke_sdf(const void *shape, float u, float v) {
    const synth_stroke *s = shape;
    float best = INFINITY;
    for (int i = 0; i + 1 < s->n; i++) {
        float ex = s->x[i + 1] - s->x[i], ey = s->y[i + 1] - s->y[i];
        float wx = u - s->x[i], wy = v - s->y[i];
        float len2 = ex * ex + ey * ey;
        float t = len2 > 0.0f ? (wx * ex + wy * ey) / len2 : 0.0f;
        t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
        float d = synth_length(wx - t * ex, wy - t * ey) - (s->r[i] + t * (s->r[i + 1] - s->r[i]));
        if (d < best) best = d;
    }
    return best;
}

synth_rect synth_stroke_bounds(const synth_stroke *s) {
    synth_rect r = {INFINITY, INFINITY, -INFINITY, -INFINITY};
    for (int i = 0; i < s->n; i++) {
        r.u0 = fminf(r.u0, s->x[i] - s->r[i]), r.u1 = fmaxf(r.u1, s->x[i] + s->r[i]);
        r.v0 = fminf(r.v0, s->y[i] - s->r[i]), r.v1 = fmaxf(r.v1, s->y[i] + s->r[i]);
    }
    return r;
}

void synth_polygon_add(synth_polygon *p, float x, float y) {
    if (p->n >= SYNTH_MAX_POINTS) return;
    p->x[p->n] = x, p->y[p->n] = y;
    p->n++;
}

/* Exact signed distance to a simple polygon (Quilez): the nearest edge gives
 * the magnitude, a crossing count the sign. */
float synth_polygon_sdf(const void *shape, float u, float v) {
    const synth_polygon *p = shape;
    if (p->n < 3) return INFINITY;
    float best = INFINITY, sign = 1.0f;
    for (int i = 0, j = p->n - 1; i < p->n; j = i, i++) {
        float ex = p->x[j] - p->x[i], ey = p->y[j] - p->y[i];
        float wx = u - p->x[i], wy = v - p->y[i];
        float len2 = ex * ex + ey * ey;
        float t = len2 > 0.0f ? (wx * ex + wy * ey) / len2 : 0.0f;
        t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
        float bx = wx - t * ex, by = wy - t * ey;
        float d2 = bx * bx + by * by;
        if (d2 < best) best = d2;
        int c0 = v >= p->y[i], c1 = v<p->y[j], c2 = ex * wy> ey * wx;
        if ((c0 && c1 && c2) || (!c0 && !c1 && !c2)) sign = -sign;
    }
    return sign * sqrtf(best);
}

synth_rect synth_polygon_bounds(const synth_polygon *p) {
    synth_rect r = {INFINITY, INFINITY, -INFINITY, -INFINITY};
    for (int i = 0; i < p->n; i++) {
        r.u0 = fminf(r.u0, p->x[i]), r.u1 = fmaxf(r.u1, p->x[i]);
        r.v0 = fminf(r.v0, p->y[i]), r.v1 = fmaxf(r.v1, p->y[i]);
    }
    return r;
}

float synth_combo_sdf(const void *shape, float u, float v) {
    const synth_combo *c = shape;
    float a = c->a(c->shape_a, u, v), b = c->b(c->shape_b, u, v);
    switch (c->op) {
    case SYNTH_INTERSECT: return fmaxf(a, b);
    case SYNTH_SUBTRACT: return fmaxf(a, -b);
    default: return fminf(a, b);
    }
}
