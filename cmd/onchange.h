/*
 * cmd/onchange.h - `--on-change COMMAND`: a local subscriber process for
 * change events, on every node that has one configured.
 *
 * The agent runs `/bin/sh -c COMMAND` for its whole life and writes each
 * change event it delivers to the command's standard input, one JSON
 * object per line (the objects of `meridian watch --changes --json`, without the stream's
 * own seq and time).
 * Its output goes where the agent's goes.  Bounded: a command more than
 * ONCHANGE_BACKLOG_MAX bytes behind is too slow (it is not reading); it
 * gets SIGKILL, with a log line saying so, and is started again like a command that exited: after
 * a backoff of 1 s doubling to 30 s (reset once it has run for a minute).
 * Events that arrive while no command runs are not queued: they are
 * counted (onchange_stats.dropped) and the first of each gap is logged, so
 * a loss is never silent; an application that must see every change
 * dedupes on (lsn, xid) from a `meridian watch --changes` stream it
 * restarts itself.
 */
#ifndef MERIDIAN_CMD_ONCHANGE_H
#define MERIDIAN_CMD_ONCHANGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ONCHANGE_BACKLOG_MAX (4u << 20)

struct onchange;

/* Starts @command (copied); NULL when out of memory. */
struct onchange *onchange_new(uv_loop_t *loop, const char *command);
/* Writes one event line (@len bytes, without the newline). */
void onchange_write(struct onchange *o, const char *line, size_t len);
/* Stops the command (SIGTERM); frees once libuv has closed its handles. */
void onchange_close(struct onchange *o);

struct onchange_stats {
	uint64_t written, dropped, restarts, too_slow;
};
void onchange_stats_get(const struct onchange *o, struct onchange_stats *out);

#endif
