/*
 * cmd/flags.c - the flag parser of every subcommand (see flags.h).
 *
 * Deliberately not getopt_long(): its silent prefix matching ("--prof"
 * for "--profile") turns a flag added later into an error for scripts
 * that abbreviated an older one, its diagnostics depend on optind
 * arithmetic, and its global state makes it awkward to call twice in one
 * test.  The whole grammar fits in one loop.
 */
#include "cmd/flags.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct flag *flag_find(const struct flag *flags, size_t nflags, const char *name,
				    size_t len)
{
	for (size_t i = 0; i < nflags; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

/* Both entry points: @first NULL forbids positional arguments. */
static int parse(int argc, char **argv, const struct flag *flags, size_t nflags, int *first,
		 char *err, size_t errlen)
{
	char dummy[1];

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (first)
		*first = argc;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = NULL;
		const struct flag *f;
		size_t nlen;

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
			return FLAGS_HELP;
		if (strcmp(arg, "--") == 0 && first) {
			*first = i + 1;
			return 0;
		}
		if (first && (arg[0] != '-' || arg[1] == '\0')) {
			*first = i;
			return 0;
		}
		if (strcmp(arg, "--") == 0) {
			if (i + 1 < argc) {
				snprintf(err, errlen, "unexpected argument \"%s\"", argv[i + 1]);
				return -EINVAL;
			}
			return 0;
		}
		if (arg[0] != '-' || arg[1] == '\0') {
			snprintf(err, errlen, "unexpected argument \"%s\"", arg);
			return -EINVAL;
		}
		if (arg[1] != '-') {
			snprintf(err, errlen, "unknown flag \"%s\"", arg);
			return -EINVAL;
		}
		arg += 2;
		nlen = strcspn(arg, "=");
		if (arg[nlen] == '=')
			val = arg + nlen + 1;
		f = flag_find(flags, nflags, arg, nlen);
		if (f == NULL) {
			snprintf(err, errlen, "unknown flag \"--%.*s\"", (int)nlen, arg);
			return -EINVAL;
		}
		if (f->kind == FLAG_BOOL) {
			if (val) {
				snprintf(err, errlen, "--%s takes no value", f->name);
				return -EINVAL;
			}
			*(bool *)f->dst = true;
			continue;
		}
		if (val == NULL) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "--%s needs a value", f->name);
				return -EINVAL;
			}
			val = argv[++i];
		}
		if (f->kind == FLAG_STRING) {
			*(const char **)f->dst = val;
			continue;
		}
		struct flag_list *l = f->dst;

		if (l->n >= l->max) {
			snprintf(err, errlen, "--%s: at most %zu %s", f->name, l->max,
				 l->noun ? l->noun : "values");
			return -EINVAL;
		}
		l->v[l->n++] = val;
	}
	return 0;
}

int flags_parse(int argc, char **argv, const struct flag *flags, size_t nflags, char *err,
		size_t errlen)
{
	return parse(argc, argv, flags, nflags, NULL, err, errlen);
}

int flags_parse_args(int argc, char **argv, const struct flag *flags, size_t nflags,
		     int *first, char *err, size_t errlen)
{
	return parse(argc, argv, flags, nflags, first, err, errlen);
}
