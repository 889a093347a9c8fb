/*
 * lib/log.h - the one logger: levels, text or JSON lines, rate limiting.
 *
 * Text lines:  2026-11-21T22:14:16.123Z notice gossip: member f1 failed
 * JSON lines:  {"time":"...","severity":"NOTICE","component":"gossip",
 *               "message":"member f1 failed"}
 * "severity" uses the names cloud log collectors understand (DEBUG, INFO,
 * NOTICE, WARNING, ERROR).  Lines go to stderr.
 *
 * LOG(level, component, fmt, ...) checks the level before its arguments are
 * evaluated.  Conventions: membership transitions at NOTICE, malformed input
 * at WARNING through LOG_RATELIMITED, per-packet detail at DEBUG.
 */
#ifndef MERIDIAN_LIB_LOG_H
#define MERIDIAN_LIB_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
	LOG_DEBUG = 0,
	LOG_INFO = 1,
	LOG_NOTICE = 2,
	LOG_WARNING = 3,
	LOG_ERROR = 4,
	LOG_OFF = 5,
};

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

extern enum log_level log_threshold;

void log_set_level(enum log_level l);
void log_set_format(enum log_format f);
/* "debug", "info", "notice", "warning"/"warn", "error", "off" -> level;
 * -EINVAL otherwise. */
int log_level_parse(const char *s);
/* "text" or "json" -> format; -EINVAL otherwise. */
int log_format_parse(const char *s);

void log_write(enum log_level l, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define LOG(level, component, ...)                                  \
	do {                                                        \
		if ((level) >= log_threshold)                       \
			log_write((level), (component), __VA_ARGS__); \
	} while (0)

/*
 * At most one line per @interval_ms per call site; the next line that gets
 * through says how many were suppressed.  Needs a monotonic clock: uses
 * CLOCK_MONOTONIC itself (logging is I/O anyway).
 */
struct log_ratelimit {
	uint64_t next_ms;
	uint64_t suppressed;
};
bool log_ratelimit_pass(struct log_ratelimit *rl, uint64_t interval_ms, uint64_t *suppressed);

#define LOG_RATELIMITED(level, component, ...)                                     \
	do {                                                                       \
		static struct log_ratelimit rl_;                                   \
		uint64_t sup_;                                                     \
		if ((level) >= log_threshold && log_ratelimit_pass(&rl_, 5000, &sup_)) { \
			if (sup_)                                                  \
				log_write((level), (component), "(%llu similar lines suppressed)", \
					  (unsigned long long)sup_);                \
			log_write((level), (component), __VA_ARGS__);             \
		}                                                                  \
	} while (0)

#endif
