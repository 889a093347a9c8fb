/*
 * cmd/main.c - `meridian <command> [args]`: finds the subcommand and runs it.
 *
 * Thin on purpose: the subcommands live in their own files (agent.c,
 * cli.c) and the subsystems in libraries; this only dispatches.  It also
 * ignores SIGPIPE for the whole process: libuv writes sockets with
 * write(2), and a client that hangs up must cost a write error, not the
 * agent's life.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "agent", cmd_agent, "run the agent (foreground; SIGTERM/SIGINT = graceful leave)" },
	{ "members", cmd_members, "list the cluster's members as the local agent sees them" },
	{ "info", cmd_info, "show this node: name, region, primary region, leader" },
	{ "rpc", cmd_rpc, "run a method on a node of a region (--region R, --primary, --node N)" },
	{ "sql", cmd_sql, "run SQL: reads on the local replica, --write on the primary" },
	{ "leader", cmd_leader, "show the leader of the primary region and its term" },
	{ "watch", cmd_watch, "stream membership and leader events" },
	{ "leave", cmd_leave, "ask the local agent to leave gracefully and exit" },
	{ "keygen", cmd_keygen, "print a new random cluster secret" },
	{ "version", cmd_version, "print the version and protocol range" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char usage_line[] =
	"usage: meridian <command> [args]   (`meridian --help` lists the commands)\n";

static void usage(FILE *f)
{
	fprintf(f, "usage: meridian <command> [args]\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun `meridian <command> --help` for a command's flags.\n");
}

static const struct command *command_find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct command *c;

	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fputs(usage_line, stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		if (argc > 2 && strcmp(argv[1], "help") == 0) {
			char help[] = "--help";
			char *args[] = { argv[2], help, NULL };

			c = command_find(argv[2]);
			if (!c) {
				fprintf(stderr, "meridian: unknown command \"%s\"\n%s", argv[2],
					usage_line);
				return EXIT_USAGE;
			}
			return c->run(2, args);
		}
		usage(stdout);
		return EXIT_OK_;
	}
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(1, argv + 1);
	/* Internal, not listed: how the agent starts its --on-leader command. */
	if (strcmp(argv[1], "__on-leader") == 0)
		return cmd_on_leader_exec(argc - 1, argv + 1);
	c = command_find(argv[1]);
	if (!c) {
		fprintf(stderr, "meridian: unknown command \"%s\"\n%s", argv[1], usage_line);
		return EXIT_USAGE;
	}
	return c->run(argc - 1, argv + 1);
}
