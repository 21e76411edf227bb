/* pasm's entry point: dispatches `pasm <command> [options]` to the command's
 * function, prints the top-level help and the version. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "pasm/core.h"

const pasm_command pasm_commands[] = {
    {"synth", pasm_cmd_synth, "draw synthetic faces (the demo data and ground truth)"},
    {"train", pasm_cmd_train, "train an expression classifier"},
    {"eval", pasm_cmd_eval, "accuracy, per-class accuracy and confusion of a checkpoint"},
    {"predict", pasm_cmd_predict, "labels and probabilities of faces"},
    {"mine", pasm_cmd_mine, "find each face's most informative point (PASM's point attack)"},
    {"round", pasm_cmd_round, "train one PASM student on original + masked faces"},
    {"run", pasm_cmd_run, "the whole PASM loop: baseline, then rounds of mine + round"},
    {"experiment", pasm_cmd_experiment, "PASM and its controls over seeds: tables and tests"},
    {"info", pasm_cmd_info, "print a checkpoint's metadata and tensors"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
    fprintf(out, "pasm %s - facial-expression training and Point Adversarial Self Mining\n\n"
                 "usage: pasm <command> [options]    (pasm <command> --help for its options)\n\n"
                 "commands:\n",
            PASM_VERSION);
    for (const pasm_command *c = pasm_commands; c->name; c++)
        fprintf(out, "  %-11s %s\n", c->name, c->summary);
    fprintf(out, "\n  --version   print the version\n  --help      this text\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("pasm %s\n", PASM_VERSION);
        return 0;
    }
    for (const pasm_command *c = pasm_commands; c->name; c++)
        if (!strcmp(c->name, name)) {
            int rc = c->run(argc - 1, argv + 1);
            cli_data_cache_clear();
            return rc;
        }
    fprintf(stderr, "pasm: unknown command '%s' (pasm --help lists them)\n", name);
    return 2;
}
