/*
 * lib/log.c - the one logger (see lib/log.h).
 *
 * Why it looks the way it does:
 *  - One write(2) per line.  Several processes (a local cluster started by
 *    one script) often share one stderr; a line built in a buffer and
 *    written at once is never interleaved with another process's line,
 *    where stdio's buffering would cut lines at arbitrary points.
 *  - Lines are bounded (LOG_LINE_MAX); a longer message is cut and marked
 *    with "...", never dropped.
 *  - Messages carry text that came from the network (node names, tags).  In
 *    text lines every control byte is written as \xNN, so a hostile name
 *    cannot forge a second log line (invalid UTF-8 is escaped the same
 *    way); in JSON lines the message is escaped
 *    as JSON requires and invalid UTF-8 becomes U+FFFD, so a collector
 *    never rejects a line.  lib/ does not link jansson: the escaping is
 *    done here, by hand.
 *  - The threshold and format are process-wide (the one stated piece of
 *    global state); they are set once at start-up by the agent.
 */
#include "lib/log.h"

#include "lib/clock.h"
#include "lib/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The longest line written, newline included. */
#define LOG_LINE_MAX 4096
/* The longest formatted message before escaping. */
#define LOG_MSG_MAX 2048

enum log_level log_threshold = LOG_INFO;
static enum log_format log_fmt = LOG_FORMAT_TEXT;

static const char *const level_text[] = { "debug", "info", "notice", "warning", "error" };
static const char *const level_json[] = { "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR" };

void log_set_level(enum log_level l)
{
	if (l >= LOG_DEBUG && l <= LOG_OFF)
		log_threshold = l;
}

void log_set_format(enum log_format f)
{
	if (f == LOG_FORMAT_TEXT || f == LOG_FORMAT_JSON)
		log_fmt = f;
}

int log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		enum log_level level;
	} names[] = {
		{ "debug", LOG_DEBUG },	    { "info", LOG_INFO },   { "notice", LOG_NOTICE },
		{ "warning", LOG_WARNING }, { "warn", LOG_WARNING }, { "error", LOG_ERROR },
		{ "off", LOG_OFF },
	};

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0)
			return (int)names[i].level;
	return -EINVAL;
}

int log_format_parse(const char *s)
{
	if (s && strcasecmp(s, "text") == 0)
		return LOG_FORMAT_TEXT;
	if (s && strcasecmp(s, "json") == 0)
		return LOG_FORMAT_JSON;
	return -EINVAL;
}

/* A bounded output buffer: appends past the end are dropped and noted, so
 * the caller can mark the cut. */
struct line {
	char buf[LOG_LINE_MAX];
	size_t len;
	size_t cap; /* bytes usable before the reserved tail */
	int cut;
};

static void line_put(struct line *l, const char *s, size_t n)
{
	if (l->len + n > l->cap) {
		l->cut = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_puts(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

/* Appends @s as the inside of a JSON string. */
static void line_put_json(struct line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	char esc[8];

	while (n > 0) {
		unsigned char c = *p;
		size_t k;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			line_put(l, esc, 2);
			k = 1;
		} else if (c == '\n') {
			line_put(l, "\\n", 2);
			k = 1;
		} else if (c == '\t') {
			line_put(l, "\\t", 2);
			k = 1;
		} else if (c == '\r') {
			line_put(l, "\\r", 2);
			k = 1;
		} else if (c < 0x20 || c == 0x7F) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			line_put(l, esc, 6);
			k = 1;
		} else {
			k = utf8_seq_len(p, n);
			if (k == 0) {
				line_put(l, "\\ufffd", 6);
				k = 1;
			} else {
				line_put(l, (const char *)p, k);
			}
		}
		if (l->cut)
			return;
		p += k;
		n -= k;
	}
}

/* Appends @s with control bytes and invalid UTF-8 written as \xNN (text
 * lines). */
static void line_put_text(struct line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	char esc[8];

	while (n > 0 && !l->cut) {
		size_t k = utf8_seq_len(p, n);

		if (*p < 0x20 || *p == 0x7F || k == 0) {
			snprintf(esc, sizeof(esc), "\\x%02x", *p);
			line_put(l, esc, 4);
			k = 1;
		} else {
			line_put(l, (const char *)p, k);
		}
		p += k;
		n -= k;
	}
}

static void format_now(char *out, size_t outlen)
{
	clock_format_rfc3339(clock_wall_ms(), out, outlen);
}

/* Writes the whole line; a partial write (a full pipe) is finished by a
 * few more writes rather than dropped; EINTR is retried. */
static void write_line(const char *buf, size_t len)
{
	int tries = 8;

	while (len > 0 && tries-- > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

void log_write(enum log_level l, const char *component, const char *fmt, ...)
{
	char msg[LOG_MSG_MAX];
	char now[40];
	struct line line;
	va_list ap;
	int n;
	int saved_errno = errno;

	if (l < LOG_DEBUG || l >= LOG_OFF || l < log_threshold)
		return;
	if (!component)
		component = "meridian";

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		snprintf(msg, sizeof(msg), "(unformattable log message: %s)", fmt);

	format_now(now, sizeof(now));
	line.len = 0;
	line.cut = 0;
	/* Keep room for the longest tail: "...\"}\n" */
	line.cap = sizeof(line.buf) - 8;

	if (log_fmt == LOG_FORMAT_JSON) {
		line_puts(&line, "{\"time\":\"");
		line_puts(&line, now);
		line_puts(&line, "\",\"severity\":\"");
		line_puts(&line, level_json[l]);
		line_puts(&line, "\",\"component\":\"");
		line_put_json(&line, component);
		line_puts(&line, "\",\"message\":\"");
		line_put_json(&line, msg);
		line.cap = sizeof(line.buf);
		if (line.cut || (n > 0 && (size_t)n >= sizeof(msg)))
			line_puts(&line, "...");
		line_puts(&line, "\"}\n");
	} else {
		line_puts(&line, now);
		line_puts(&line, " ");
		line_puts(&line, level_text[l]);
		line_puts(&line, " ");
		line_put_text(&line, component);
		line_puts(&line, ": ");
		line_put_text(&line, msg);
		line.cap = sizeof(line.buf);
		if (line.cut || (n > 0 && (size_t)n >= sizeof(msg)))
			line_puts(&line, "...");
		line_puts(&line, "\n");
	}
	write_line(line.buf, line.len);
	errno = saved_errno;
}

bool log_ratelimit_pass(struct log_ratelimit *rl, uint64_t interval_ms, uint64_t *suppressed)
{
	uint64_t now = clock_mono_ms();

	if (now >= rl->next_ms) {
		if (suppressed)
			*suppressed = rl->suppressed;
		rl->suppressed = 0;
		rl->next_ms = now + interval_ms;
		return true;
	}
	rl->suppressed++;
	if (suppressed)
		*suppressed = 0;
	return false;
}
