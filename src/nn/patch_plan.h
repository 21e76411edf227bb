/* Where a one-pixel change reaches in the network (the candidates' windows
 * of pasm_net_patch, src/nn/patch.c, and of its GPU counterpart): per
 * tensor, the side of a square window that covers every activation a
 * changed pixel alters, and where it sits for a pixel in each row. */
#ifndef PASM_PATCH_PLAN_H
#define PASM_PATCH_PLAN_H

#include "nn/net_internal.h"

/* tensor 0 the input, 1 the stem's output, 2 + 2b block b's mid (bn1),
 * 3 + 2b its output */
#define PASM_PATCH_TENSORS 18

typedef struct {
    int n_blocks;  /* blocks computed on windows: [0, n_blocks) (0: none worth it) */
    int n_tensors; /* 2 + 2 n_blocks */
    int size;      /* the input's side S */
    int c[PASM_PATCH_TENSORS], h[PASM_PATCH_TENSORS], win[PASM_PATCH_TENSORS];
    int *lo; /* n_tensors x S: tensor i's window origin (row or column) for a
                pixel in row (or column) r at lo[i * S + r], inside the map */
    double clean_cost, cand_cost; /* a face's clean pass, a candidate: in whole forwards */
} pasm_patch_plan;

pasm_status pasm_patch_plan_make(const pasm_net *net, pasm_patch_plan *pl);

/* The environment's say (PASM_PATCH): "0" turns the windows off (every
 * candidate a whole forward), "require" makes a scorer that cannot have
 * them fail with the reason instead of falling back to whole forwards (for
 * the tests and benchmarks that must measure them); anything else, or
 * unset, uses them where they apply and pay. */
typedef enum { PASM_PATCH_OFF = 0, PASM_PATCH_AUTO = 1, PASM_PATCH_REQUIRE = 2 } pasm_patch_use;
pasm_patch_use pasm_patch_env(void);

/* Whether m candidates (item j a change of face img[j]) are worth windows:
 * their faces' clean passes and their windows cost at most 0.75 of m whole
 * forwards in multiply-adds. The windows' gathers and small sgemms take
 * back part of the saving (de at 48x48, width 16: 0.52 of the
 * multiply-adds, 0.6 of the time), so a saving under a quarter is not
 * taken: de's populations qualify (0.52 at 48x48 with 32 a face, 0.74 at
 * 32x32 with 4); random's and cam's two a face (0.81) do not. seen: a
 * zeroed byte per face, left zeroed. */
int pasm_patch_worth(double clean_cost, double cand_cost, int m, const int *img, uint8_t *seen);

/* The next group of candidates img[start, m): items in order while there
 * are at most max_group of them over at most max_faces faces. Each face
 * gets a slot: slot_face[s] is the face in slot s (*faces of them), and
 * face_of[j] the slot of item start + j. slot_of (a slot per bound face)
 * is -1 throughout on entry and on return. Returns the group's size. */
int pasm_patch_group(const int *img, int start, int m, int max_group, int max_faces, int *slot_of,
                     int *slot_face, int *face_of, int *faces);
void pasm_patch_plan_free(pasm_patch_plan *pl);

#endif
