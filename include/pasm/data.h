/* pasm data: datasets in memory (uint8 N x C x S x S images, int32 labels,
 * class names, source), the loaders (FER2013 CSV or CSV.gz, FER+ labels,
 * image folders, single images), image decoding and PNG writing, the seeded
 * stratified validation split, normalisation statistics, batch assembly and
 * augmentation. Every function returns a pasm_status; messages name the file
 * and the line, image or folder at fault. Nothing here prints. */
#ifndef PASM_DATA_H
#define PASM_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "pasm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- datasets ---- */

/* A dataset owns everything it points to; pasm_dataset_free releases it.
 * Image i is images[i * channels * size * size ...], planar (NCHW). */
typedef struct {
    int n;              /* number of images */
    int channels;       /* 1 (grey) or 3 (RGB) */
    int size;           /* images are size x size pixels */
    uint8_t *images;    /* n * channels * size * size bytes */
    int32_t *labels;    /* n labels in 0..n_classes-1; -1 everywhere when unlabelled */
    int labelled;       /* 1 when labels are class indices, 0 for unlabelled images */
    int n_classes;      /* 0 for unlabelled images */
    char **class_names; /* n_classes names in label order */
    char **paths;       /* per image: its file (folders, single images); NULL for CSVs */
    int32_t *rows;      /* per image: its 0-based data row in a CSV; NULL for folders */
    char *source;       /* "path (split)" for messages and reports */
} pasm_dataset;

void pasm_dataset_free(pasm_dataset *ds);
/* An empty dataset of n zeroed images and labels (-1), no class names, no
 * paths, for generators (synthetic faces) and tests. */
pasm_status pasm_dataset_alloc(pasm_dataset *ds, int n, int channels, int size, const char *source);
/* Replaces the class names with copies of names[0..n_classes-1]. */
pasm_status pasm_dataset_set_classes(pasm_dataset *ds, const char *const *names, int n_classes);
/* A copy of the images idx[0..n-1] (in that order), with their labels,
 * paths and rows, the same classes and source. */
pasm_status pasm_dataset_subset(const pasm_dataset *ds, const int *idx, int n, pasm_dataset *out);
/* counts[0..n_classes-1] = images per class. */
void pasm_dataset_class_counts(const pasm_dataset *ds, int64_t *counts);

/* ---- loading ---- */

typedef struct {
    const char *path;   /* CSV (plain or gzip, any name), image folder, or one image file */
    const char *split;  /* see below; NULL or "" = "all" */
    int input_size;     /* S, images are resized to S x S; 0 = 48 */
    int channels;       /* 1 or 3; 0 = 1 */
    const char *labels; /* FER+ fer2013new.csv (plain or gzip) joined to a CSV, or NULL */
} pasm_load_spec;

/* Loads the dataset spec describes. The kind is detected from the file, not
 * its name: a directory is an image folder, a PNG or JPEG file one unlabelled
 * image, anything else a CSV (gzip when it starts with gzip's magic bytes).
 *
 * Splits are FER2013's names, several joined with '+', any case: Training,
 * PublicTest, PrivateTest, or all. Aliases: train = Training, val =
 * PublicTest, test = PrivateTest.
 *
 * CSV: a header naming the columns (emotion, pixels, Usage in any order; the
 * header may be quoted, CRLF line ends are fine). Rows are selected by Usage.
 * A file without a Usage column (Kaggle's train.csv / test.csv) is one split:
 * every split name reads all of it. A file without an emotion column is
 * unlabelled (labels -1) unless FER+ labels are given. Pixels are k*k
 * integers 0..255 (48 x 48 for FER2013), the same k on every row.
 *
 * FER+ (spec->labels): fer2013new.csv's row r labels the CSV's data row r;
 * the row counts must agree. The label is the plurality of the ten vote
 * columns (neutral ... contempt, unknown, NF), ties going to the lowest column
 * (numpy.argmax); rows whose plurality is unknown or NF, or without votes,
 * are dropped. Classes are FER+'s 8 in its order. Splits use the CSV's Usage
 * (FER+'s Usage where the CSV has none); where both exist they must agree.
 *
 * Folders: ROOT/<class>/<images> (.png, .jpg, .jpeg, any case; other files
 * and dot-files are ignored). A root with train/, val/ (or validation/),
 * test/ folders is split by them: Training = train/, PublicTest = val/ (test/
 * when there is no val/), PrivateTest = test/; a folder's own name also
 * selects it. Without those folders the root is one split that every split
 * name reads. A folder of images without class folders is unlabelled. Class
 * order: when every class folder (across all split folders) names a FER2013
 * class (any case; synonyms anger, disgusted, fearful, happiness, sadness,
 * surprised) classes are FER2013's seven in its order with its names (Angry,
 * Disgust, Fear, Happy, Sad, Surprise, Neutral), plus Contempt as class 7 when
 * a contempt folder exists; otherwise the class folders' names sorted (strcmp).
 * Images are ordered by split (in the order asked), class, then file name.
 * Grey, RGB, palette and alpha images are converted to spec->channels
 * (alpha dropped, RGB to grey with ITU-R 601 luma as PIL's convert("L")), then
 * resized with PIL's antialiased bilinear filter (non-square images are
 * stretched). */
pasm_status pasm_dataset_load(const pasm_load_spec *spec, pasm_dataset *out);

/* The CSV loader on a buffer in memory (plain or gzip bytes); source names
 * it in messages. spec->path is ignored, spec->labels is honoured. */
pasm_status pasm_fer_csv_parse(const char *source, const void *data, size_t size,
                               const pasm_load_spec *spec, pasm_dataset *out);

/* Parses a '+'-joined split list into a mask of PASM_SPLIT_* bits (all three
 * for "all" or NULL). Unknown names are PASM_ERR_INVALID. */
enum { PASM_SPLIT_TRAINING = 1, PASM_SPLIT_PUBLIC_TEST = 2, PASM_SPLIT_PRIVATE_TEST = 4 };
pasm_status pasm_split_parse(const char *split, unsigned *mask);

/* ---- class names ---- */

/* FER2013's seven names, then Contempt (index 7). */
extern const char *const pasm_fer2013_classes[8];
/* FER+'s eight names in its order. */
extern const char *const pasm_ferplus_classes[8];
/* The FER2013 index (0..7, Contempt 7) a name means, any case and the usual
 * synonyms (anger, disgusted, fearful, happiness, sadness, surprised), or -1. */
int pasm_class_canonical(const char *name);
/* 1 when two class names mean the same class: same canonical class, or equal
 * ignoring case. */
int pasm_class_names_match(const char *a, const char *b);

/* Remaps ds's labels to the model's class list (class_names[0..n_classes-1])
 * by name (pasm_class_names_match); ds then carries the model's names. A
 * class of ds with images that the model does not know is an error naming it,
 * unless ignore_unknown: then its images are dropped and *warning (when not
 * NULL) receives a malloc'd message saying what was dropped (NULL when
 * nothing was). An unlabelled ds just takes the model's names. */
pasm_status pasm_dataset_match_classes(pasm_dataset *ds, const char *const *class_names,
                                       int n_classes, int ignore_unknown, char **warning);

/* ---- validation split and normalisation ---- */

/* Seeded, stratified split: from each class, round(fraction * count) images
 * (at least 1 when the class has 2 or more, never all of them) go to
 * validation, chosen by a Fisher-Yates shuffle with pasm_rng(seed,
 * PASM_RNG_SPLIT, class, 0). Both index lists keep dataset order and are
 * malloc'd (caller frees with free()). The dataset must be labelled. */
pasm_status pasm_dataset_split_indices(const pasm_dataset *ds, double fraction, uint64_t seed,
                                       int **train_idx, int *n_train, int **val_idx, int *n_val);
/* The same split as two datasets (copies). */
pasm_status pasm_dataset_split(const pasm_dataset *ds, double fraction, uint64_t seed,
                               pasm_dataset *train, pasm_dataset *val);

/* Per-channel mean and (population) standard deviation of all pixels, in
 * 0..1 units; mean and std have ds->channels entries. Sums are exact
 * integers, the division is in double. */
pasm_status pasm_dataset_mean_std(const pasm_dataset *ds, float *mean, float *std);

/* ---- batches and augmentation ---- */

/* table[c * 256 + p] = (p / 255 - mean[c]) / std[c] in float32 (the values
 * pasm_batch_make writes) for 1 to 3 channels; std must be > 0. */
pasm_status pasm_norm_table(int channels, const float *mean, const float *std, float *table);

/* x (n, C, S, S) = (pixel / 255 - mean[c]) / std[c] in float32, computed
 * exactly as torchvision's ToTensor + Normalize; labels (may be NULL) gets
 * the images' labels. Images are ds's idx[0..n-1]. */
pasm_status pasm_batch_make(const pasm_dataset *ds, const int *idx, int n, const float *mean,
                            const float *std, float *x, int32_t *labels);

typedef struct {
    int crop_padding;      /* random crop after reflect padding by this much; 0 = off */
    int hflip;             /* 1 = horizontal flip with probability 0.5 */
    float erase_p;         /* random erasing probability; 0 = off */
    float erase_scale_min; /* erased area / image area, drawn uniformly */
    float erase_scale_max;
    float erase_ratio_min; /* aspect ratio h/w, drawn log-uniformly */
    float erase_ratio_max;
    int erase_random; /* 0 = fill with 0 (the normalised mean), 1 = N(0,1) noise */
    /* Samples whose index is >= this are erased with probability 1 instead
     * of erase_p (the random-erasing control erases the second copy of a
     * doubled set); 0 = off. */
    int erase_always_from;
} pasm_augment_config;

/* Padding 4, flip on, erasing off with scale 0.02..0.4, ratio 0.3..3.3, value 0. */
void pasm_augment_defaults(pasm_augment_config *cfg);

/* Augments a normalised batch x (n, C, S, S) in place, as torchvision's
 * RandomCrop(S, padding, padding_mode="reflect"), RandomHorizontalFlip and
 * RandomErasing (value 0 on the normalised tensor, i.e. the mean pixel, or
 * N(0,1) noise) would. Sample i draws from pasm_rng(seed, PASM_RNG_AUGMENT,
 * epoch, sample_index[i]) in this order, each only when enabled: crop row
 * offset, crop column offset, flip, erase, then erasing's attempts (area,
 * log-ratio, top, left; up to 10 as torchvision) and, for erase_random, the
 * box's values (channel, row, column order). The crop is applied before the
 * flip. So a sample's augmentation depends only on (seed, epoch, its index),
 * never on the batch it is in or on threads. Allocates nothing. crop_padding
 * must be < S; S at most 4096. */
pasm_status pasm_augment_batch(float *x, int n, int channels, int size,
                               const pasm_augment_config *cfg, uint64_t seed, uint64_t epoch,
                               const int *sample_index);

/* One sample's augmentation as drawn (the same draws, in the same order, as
 * pasm_augment_batch): crop offsets, flip, and the erased box (h == 0: none).
 * Output pixel (y, x) is erased inside the box, else comes from the source
 * pixel (reflect(y + dy), reflect(flip ? S-1-x+dx : x+dx)). */
typedef struct {
    int32_t dy, dx, flip, top, left, h, w, pad;
} pasm_augment_plan;

/* The plans of n samples (sample_index as pasm_augment_batch). Random
 * erasing with noise values (erase_random) has no plan: PASM_ERR_UNSUPPORTED. */
pasm_status pasm_augment_plans(int n, int size, const pasm_augment_config *cfg, uint64_t seed,
                               uint64_t epoch, const int *sample_index, pasm_augment_plan *out);

/* ---- images ---- */

/* A decoded image, planar: pixels[c * height * width + y * width + x]. */
typedef struct {
    int width, height, channels;
    uint8_t *pixels; /* malloc'd */
} pasm_image;

/* Decodes PNG or JPEG bytes (detected by magic bytes) and converts to
 * channels (1 or 3; 0 keeps the file's: 1 for grey, 3 otherwise) exactly as
 * PIL's convert("L") / convert("RGB") do: palettes expanded, alpha and
 * transparency dropped, RGB to grey as (19595 R + 38470 G + 7471 B + 2^15)
 * >> 16; 16-bit PNGs are scaled to 8 bits. Corrupt, truncated (a JPEG that
 * ends early too; libjpeg's other warnings are ignored) or unsupported (CMYK
 * JPEG) data and images over 2^26 pixels are PASM_ERR_FORMAT errors naming
 * `name`. */
pasm_status pasm_image_decode(const void *data, size_t size, const char *name, int channels,
                              pasm_image *out);
pasm_status pasm_image_read(const char *path, int channels, pasm_image *out);
void pasm_image_free(pasm_image *img);
/* Resizes to out_w x out_h (planar, img->channels planes) with PIL's
 * antialiased bilinear filter: the same bytes as PIL's
 * Image.resize((out_w, out_h), Image.BILINEAR). */
pasm_status pasm_image_resize(const pasm_image *img, int out_w, int out_h, uint8_t *out);

/* 8-bit PNG writers. gray: w*h bytes; rgb: interleaved w*h*3 bytes; planar:
 * channels (1 or 3) planes of w*h bytes. */
pasm_status pasm_png_write_gray(const char *path, int w, int h, const uint8_t *pixels);
pasm_status pasm_png_write_rgb(const char *path, int w, int h, const uint8_t *pixels);
pasm_status pasm_png_write_planar(const char *path, int channels, int w, int h,
                                  const uint8_t *pixels);

#ifdef __cplusplus
}
#endif
#endif
