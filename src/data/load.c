/* pasm_dataset_load: tells a CSV, an image folder and a single image apart
 * by what the path is (a directory, or a file's magic bytes; never its
 * name) and hands over to the matching loader. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"

static int is_image_file(const char *path) {
    unsigned char magic[8] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, magic, sizeof magic);
    close(fd);
    if (n >= 8 && memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0) return 1;
    return n >= 3 && memcmp(magic, "\xFF\xD8\xFF", 3) == 0;
}

pasm_status pasm_dataset_load(const pasm_load_spec *spec, pasm_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!spec || !spec->path || !*spec->path)
        return pasm_errorf(PASM_ERR_INVALID, "no data path given");
    struct stat sb;
    if (stat(spec->path, &sb) != 0)
        return pasm_errorf(PASM_ERR_IO, "cannot open %s: %s", spec->path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        if (spec->labels)
            return pasm_errorf(PASM_ERR_INVALID,
                               "%s: FER+ labels apply to a FER2013 CSV, not to a folder",
                               spec->path);
        return folder_load(spec, out);
    }
    if (is_image_file(spec->path)) return single_image_load(spec, out);
    return fer_csv_load_file(spec, out);
}
