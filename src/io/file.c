/* Whole-file reads and atomic whole-file writes. An atomic write goes to
 * "<path>.tmp.<pid>" in the target's folder, is fsynced, renamed over the
 * target and the folder is fsynced, so a crash or a failed write never leaves
 * a half-written file at path: readers see the old file or the new one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pasm/io.h"

/* write() until done; retries on EINTR and short writes. */
static int write_all(int fd, const unsigned char *data, size_t size) {
    while (size > 0) {
        size_t chunk = size < ((size_t)1 << 30) ? size : ((size_t)1 << 30);
        ssize_t n = write(fd, data, chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

/* The folder holding path ("." when path has no slash), malloc'd. */
static char *parent_folder(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* fsync the folder so the rename itself is durable. Some filesystems refuse
 * fsync on folders (EINVAL); the rename has happened by then, so only real
 * I/O errors are reported. */
static pasm_status sync_folder(const char *path) {
    char *folder = parent_folder(path);
    if (!folder) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", path);
    pasm_status st = PASM_OK;
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP && errno != EROFS)
            st = pasm_errorf(PASM_ERR_IO, "%s: fsync of folder %s failed: %s", path, folder,
                             strerror(errno));
        close(fd);
    }
    free(folder);
    return st;
}

pasm_status pasm_write_file_atomic(const char *path, const void *data, size_t size) {
    return pasm_write_file_atomic_parts(path, 1, &data, &size);
}

pasm_status pasm_write_file_atomic_parts(const char *path, int n, const void *const *data,
                                         const size_t *size) {
    if (!path || !*path) return pasm_errorf(PASM_ERR_INVALID, "write: empty path");
    if (n < 0 || (n > 0 && (!data || !size)))
        return pasm_errorf(PASM_ERR_INVALID, "%s: bad list of %d parts to write", path, n);
    for (int i = 0; i < n; i++)
        if (!data[i] && size[i] > 0)
            return pasm_errorf(PASM_ERR_INVALID, "%s: write of NULL data (part %d)", path, i);
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) return pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());

    pasm_status st = PASM_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        st = pasm_errorf(PASM_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp,
                         strerror(errno));
        goto done;
    }
    int failed = 0;
    for (int i = 0; i < n && !failed; i++) failed = write_all(fd, data[i], size[i]) != 0;
    if (failed) {
        st = pasm_errorf(PASM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    } else if (fsync(fd) != 0) {
        st = pasm_errorf(PASM_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    }
    /* close can report a deferred write error (NFS, quota): it counts. */
    if (close(fd) != 0 && st == PASM_OK)
        st = pasm_errorf(PASM_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == PASM_OK && rename(tmp, path) != 0)
        st = pasm_errorf(PASM_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp,
                         strerror(errno));
    if (st != PASM_OK) {
        unlink(tmp);
        goto done;
    }
    st = sync_folder(path);
done:
    free(tmp);
    return st;
}

pasm_status pasm_read_file(const char *path, unsigned char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    if (!path || !*path) return pasm_errorf(PASM_ERR_INVALID, "read: empty path");
    pasm_status st = PASM_OK;
    unsigned char *buffer = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pasm_errorf(PASM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat info;
    if (fstat(fd, &info) != 0) {
        st = pasm_errorf(PASM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(info.st_mode)) {
        st = pasm_errorf(PASM_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    size_t expected = (size_t)info.st_size;
    /* One spare byte so an empty file still gets a buffer, and text readers
     * may NUL-terminate. */
    buffer = pasm_alloc_uninit(expected + 1, path); /* large ones on huge pages */
    if (!buffer) {
        st = pasm_errorf(PASM_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, expected);
        goto done;
    }
    size_t got = 0;
    while (got < expected) {
        ssize_t n = read(fd, buffer + got, expected - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            st = pasm_errorf(PASM_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0) break; /* the file shrank while we read it */
        got += (size_t)n;
    }
    buffer[got] = 0;
    *data = buffer;
    *size = got;
    buffer = NULL;
done:
    free(buffer);
    close(fd);
    return st;
}
