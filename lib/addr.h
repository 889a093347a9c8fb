/*
 * lib/addr.h - "host:port" addresses as users write them and as gossip
 * carries them: "127.0.0.1:7600", "[::1]:7600".  Numeric hosts only (no
 * DNS here: it would block the loop).
 */
#ifndef MERIDIAN_LIB_ADDR_H
#define MERIDIAN_LIB_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parses @s into @out.  Returns 0 or -EINVAL (with a reason in @err, if
 * not NULL, at most @errlen bytes). */
int addr_parse(const char *s, struct sockaddr_storage *out, char *err, size_t errlen);
/* Formats @sa as "host:port" / "[v6]:port" into @out.  0 or -EINVAL. */
int addr_format(const struct sockaddr *sa, char *out, size_t outlen);
/* True for 0.0.0.0 / [::]. */
int addr_is_unspecified(const struct sockaddr *sa);

#endif
