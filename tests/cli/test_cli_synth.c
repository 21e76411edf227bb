/* End-to-end tests of `pasm synth`: --help lists every option with its
 * default, usage errors exit 2 with a message, failures exit 1, and a good
 * run writes the set and prints its summary. The binary comes from PASM_BIN
 * (set by `make test`), else build/pasm. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char temp_dir[64];
static char out_text[16384], err_text[16384];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state) {
    (void)state;
    snprintf(temp_dir, sizeof temp_dir, "/tmp/pasm-test-cli-synth-XXXXXX");
    return mkdtemp(temp_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return nftw(temp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Runs pasm with args (NULL-terminated) and returns its exit code; stdout
 * and stderr land in out_text and err_text. */
static int run_pasm(const char *first, ...) {
    const char *bin = getenv("PASM_BIN") ? getenv("PASM_BIN") : "build/pasm";
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)bin;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof out_path, "%s/stdout", temp_dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", temp_dir);
    pid_t pid = fork();
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out, 1), dup2(err, 2);
        execv(bin, argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    slurp(out_path, out_text, sizeof out_text);
    slurp(err_path, err_text, sizeof err_text);
    remove(out_path), remove(err_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void test_help_lists_every_option(void **state) {
    (void)state;
    assert_int_equal(run_pasm("synth", "--help", NULL), 0);
    static const char *const options[] = {"--out",   "--count",     "--size",
                                          "--seed",  "--ambiguous", "--glasses",
                                          "--hands", "--quiet",     "--help"};
    for (size_t i = 0; i < sizeof options / sizeof *options; i++)
        assert_non_null(strstr(out_text, options[i]));
    assert_non_null(strstr(out_text, "(default 2100)"));
    assert_non_null(strstr(out_text, "(default 48)"));
    assert_non_null(strstr(out_text, "(default 1)"));
    assert_non_null(strstr(out_text, "(default 0.12)"));
    /* The top-level help names the command. */
    assert_int_equal(run_pasm("--help", NULL), 0);
    assert_non_null(strstr(out_text, "synth"));
}

static void expect_usage_error(const char *needle, const char *a, const char *b, const char *c) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/never", temp_dir);
    int code = c   ? run_pasm("synth", "--out", dir, a, b, c, NULL)
               : b ? run_pasm("synth", "--out", dir, a, b, NULL)
                   : run_pasm("synth", "--out", dir, a, NULL);
    if (code != 2 || !strstr(err_text, needle))
        print_error("args %s %s: exit %d, stderr: %s\n", a, b ? b : "", code, err_text);
    assert_int_equal(code, 2);
    assert_non_null(strstr(err_text, needle));
    assert_int_equal(access(dir, F_OK), -1); /* nothing written */
}

static void test_usage_errors_exit_2(void **state) {
    (void)state;
    expect_usage_error("--count", "--count", "0", NULL);
    expect_usage_error("--count", "--count", "12x", NULL);
    expect_usage_error("--size", "--size", "31", NULL);
    expect_usage_error("--size", "-s", "", NULL);
    expect_usage_error("--seed", "--seed", "-3", NULL);
    expect_usage_error("--ambiguous", "--ambiguous", "1.5", NULL);
    expect_usage_error("--hands", "--hands", "nan", NULL);
    expect_usage_error("unknown option '--bogus'", "--bogus", NULL, NULL);
    expect_usage_error("needs a value", "--count", NULL, NULL);
    expect_usage_error("unexpected argument 'extra'", "extra", NULL, NULL);
    assert_int_equal(run_pasm("synth", "--count", "10", NULL), 2);
    assert_non_null(strstr(err_text, "--out DIR is required"));
}

static void test_run_writes_set(void **state) {
    (void)state;
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/set", temp_dir);
    assert_int_equal(
        run_pasm("synth", "--out", dir, "--count", "20", "--size", "32", "--seed", "4", NULL), 0);
    assert_non_null(strstr(out_text, "20 faces of 32x32 (seed 4)"));
    assert_non_null(strstr(out_text, "train      14 faces (2 per class)"));
    assert_non_null(strstr(out_text, "val         3 faces (0-1 per class)"));
    snprintf(path, sizeof path, "%s/train/angry/000000.png", dir);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/test/fear/000019.png", dir);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/regions.csv", dir);
    assert_int_equal(access(path, R_OK), 0);
    /* The folder is not empty now: a failure, exit 1, with the reason. */
    assert_int_equal(run_pasm("synth", "--out", dir, "--count", "20", "-q", NULL), 1);
    assert_non_null(strstr(err_text, "not empty"));
    /* --quiet prints nothing on success. */
    snprintf(dir, sizeof dir, "%s/quiet", temp_dir);
    assert_int_equal(run_pasm("synth", "-o", dir, "-n", "7", "-s", "32", "-q", NULL), 0);
    assert_string_equal(out_text, "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_every_option),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_run_writes_set),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
