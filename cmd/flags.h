/*
 * cmd/flags.h - the one command-line flag parser of every subcommand.
 *
 * A subcommand describes its flags in a table and hands it argv; the
 * parser stores each value where the table says and nothing else: what a
 * value means (a duration, an address, a region) is for the caller to
 * check, so every flag's rules live next to its meaning.
 *
 * Accepted forms, and nothing cleverer (no abbreviations, no bundled
 * short options; positional arguments only through flags_parse_args()):
 *
 *   --name value      a string or list flag; the next argument is the
 *                     value whatever it looks like ("--node --x" names
 *                     the node "--x")
 *   --name=value      the same; the value may be empty
 *   --name            a bool flag (which takes no value)
 *   -h, --help        asks for the help text (unless a bad flag came first)
 *   --                ends the flags (anything after it is unexpected)
 *
 * A string flag given twice keeps the last value; a list flag keeps
 * every value, in order, up to its bound.
 */
#ifndef MERIDIAN_CMD_FLAGS_H
#define MERIDIAN_CMD_FLAGS_H

#include <stdbool.h>
#include <stddef.h>

enum flag_kind {
	FLAG_BOOL,    /* dst is a bool *: set to true */
	FLAG_STRING,  /* dst is a const char **: the last value given */
	FLAG_LIST,    /* dst is a struct flag_list *: every value given */
};

/* Where a repeatable flag collects its values. */
struct flag_list {
	const char **v;    /* the caller's array of @max entries */
	size_t n;          /* values stored so far (start at 0) */
	size_t max;        /* past this: "--tag: at most 16 tags" */
	const char *noun;  /* what the bound counts ("tags"); NULL: "values" */
};

struct flag {
	const char *name;  /* without the leading "--" */
	enum flag_kind kind;
	void *dst;
};

/* flags_parse() met -h or --help. */
#define FLAGS_HELP 1

/*
 * Parses @argv[1..@argc) (argv[0] is the subcommand's name) against the
 * @nflags flags of @flags.  Values are not copied: they point into @argv,
 * which must outlive their use.
 *
 * Returns 0, FLAGS_HELP as soon as -h or --help is seen (flags before it
 * are stored; those after it are not looked at), or -EINVAL with a
 * one-line message naming the culprit in @err (@errlen bytes, no newline):
 *   unknown flag "--bogus"        --node needs a value
 *   --json takes no value         unexpected argument "foo"
 *   --tag: at most 16 tags
 * Values stored before the error stay stored.
 */
int flags_parse(int argc, char **argv, const struct flag *flags, size_t nflags, char *err,
		size_t errlen);

/*
 * The same for commands whose flags come before positional arguments
 * (`meridian rpc [flags] METHOD [ARG...]`): the flags end at the first
 * argument that does not start with "-" (or is "-"), or after "--";
 * *@first gets its index (@argc when there is none).  What follows is
 * never read as flags, so an argument may look like one.
 */
int flags_parse_args(int argc, char **argv, const struct flag *flags, size_t nflags,
		     int *first, char *err, size_t errlen);

#endif
