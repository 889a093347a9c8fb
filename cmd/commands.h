/*
 * cmd/commands.h - the subcommands of the one `meridian` binary, and the
 * CLI's exit codes (stable: scripts rely on them).
 */
#ifndef MERIDIAN_CMD_COMMANDS_H
#define MERIDIAN_CMD_COMMANDS_H

enum meridian_exit {
	EXIT_OK_ = 0,           /* success */
	EXIT_REMOTE_ERROR = 1,  /* the remote side answered with an error */
	EXIT_USAGE = 2,         /* usage or configuration error */
	EXIT_UNAVAILABLE = 3,   /* no agent, no target, or unavailable */
	EXIT_TIMEOUT = 4,       /* timed out */
};

/* Each takes the arguments after the subcommand name (argv[0] is the
 * subcommand) and returns the process exit code. */
int cmd_agent(int argc, char **argv);    /* cmd/agent.c */
int cmd_members(int argc, char **argv);  /* cmd/cli.c */
int cmd_info(int argc, char **argv);
int cmd_leave(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_rpc(int argc, char **argv);
int cmd_leader(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_sql(int argc, char **argv);
/* The --on-leader shim (cmd/elect.c): `meridian __on-leader COMMAND`. */
int cmd_on_leader_exec(int argc, char **argv);

#endif
