/* The pasm commands: each takes the arguments after its name (argv[0] is the
 * command name) and returns the process exit code: 0 ok, 1 failure, 2 usage. */
#ifndef PASM_CLI_COMMANDS_H
#define PASM_CLI_COMMANDS_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} pasm_command;

extern const pasm_command pasm_commands[];

int pasm_cmd_synth(int argc, char **argv);
int pasm_cmd_train(int argc, char **argv);
int pasm_cmd_eval(int argc, char **argv);
int pasm_cmd_predict(int argc, char **argv);
int pasm_cmd_info(int argc, char **argv);
int pasm_cmd_mine(int argc, char **argv);
int pasm_cmd_round(int argc, char **argv);
int pasm_cmd_run(int argc, char **argv);
int pasm_cmd_experiment(int argc, char **argv);

#endif
