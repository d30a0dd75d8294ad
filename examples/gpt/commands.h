/* commands.h - the gpt program's subcommands. */
#ifndef GPT_COMMANDS_H
#define GPT_COMMANDS_H

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_bench(int argc, char **argv);
double gpt_now(void);

#endif
