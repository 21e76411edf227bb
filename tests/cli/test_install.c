/* make install PREFIX=... puts the library, headers, binary and pasm.pc in
 * place: a program built with `pkg-config --cflags --libs pasm` against the
 * installed shared library creates a network and runs, and the installed
 * binary answers --version. Uses the normal build (make install builds it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/helpers.h"

static void test_install_and_pkg_config(void **state) {
    char dir[256], prog[400];
    test_tmpdir(dir, sizeof dir);
    /* a make started by make test must not join its jobserver, and under
     * make SAN=1 test it must still install the normal build (SAN=1 is in
     * the environment of recipes) */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s install SAN=0 BUILD=build PREFIX='%s/prefix' "
             ">'%s/install.log' 2>&1 || (cat '%s/install.log'; false)",
             dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(prog, sizeof prog, "%s/use.c", dir);
    FILE *f = fopen(prog, "w");
    assert_non_null(f);
    fputs("#include <pasm/pasm.h>\n#include <stdio.h>\n"
          "int main(void) {\n"
          "    pasm_net_config c = {.arch = \"resnet18\", .width = 16, .in_channels = 1,\n"
          "                         .num_classes = 7, .input_size = 48};\n"
          "    pasm_net *n;\n"
          "    if (pasm_net_create(&n, &c, 2)) { puts(pasm_last_error()); return 1; }\n"
          "    printf(\"%d tensors\\n\", pasm_net_n_state(n));\n"
          "    pasm_net_free(n);\n"
          "    return 0;\n}\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "export PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig'; "
             "cc '%s' $(pkg-config --cflags --libs pasm) -Wl,-rpath,'%s/prefix/lib' -o '%s/use' "
             "&& '%s/use' > '%s/use.out' && '%s/prefix/bin/pasm' --version >> '%s/use.out'",
             dir, prog, dir, dir, dir, dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(prog, sizeof prog, "%s/use.out", dir);
    f = fopen(prog, "r");
    assert_non_null(f);
    char line[128] = "", line2[128] = "";
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(fgets(line2, sizeof line2, f));
    fclose(f);
    assert_string_equal(line, "122 tensors\n");
    assert_non_null(strstr(line2, "pasm 0."));
    test_rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_install_and_pkg_config)};
    return cmocka_run_group_tests_name("cli/install", tests, NULL, NULL);
}
