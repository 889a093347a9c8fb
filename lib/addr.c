/*
 * lib/addr.c - numeric "host:port" parsing and formatting (see addr.h).
 */
#include "lib/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int addr_fail(char *err, size_t errlen, const char *s, const char *why)
{
	if (err && errlen)
		snprintf(err, errlen, "bad address \"%s\": %s", s, why);
	return -EINVAL;
}

int addr_parse(const char *s, struct sockaddr_storage *out, char *err, size_t errlen)
{
	char host[64];
	const char *port_str;
	size_t hlen;
	int v6 = 0;

	if (!s || !*s)
		return addr_fail(err, errlen, s ? s : "", "empty");
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return addr_fail(err, errlen, s, "expected [v6]:port");
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return addr_fail(err, errlen, s, "bad IPv6 host");
		memcpy(host, s + 1, hlen);
		port_str = close + 2;
		v6 = 1;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon)
			return addr_fail(err, errlen, s, "expected host:port");
		if (memchr(s, ':', (size_t)(colon - s)))
			return addr_fail(err, errlen, s, "IPv6 hosts go in brackets: [::1]:7600");
		hlen = (size_t)(colon - s);
		if (hlen == 0 || hlen >= sizeof(host))
			return addr_fail(err, errlen, s, "bad host");
		memcpy(host, s, hlen);
		port_str = colon + 1;
	}
	host[hlen] = '\0';

	char *end;
	errno = 0;
	long port = strtol(port_str, &end, 10);
	if (!*port_str || *end || errno || port < 0 || port > 65535)
		return addr_fail(err, errlen, s, "port must be 0..65535");

	memset(out, 0, sizeof(*out));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return addr_fail(err, errlen, s, "not a numeric IPv6 address");
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)out;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return addr_fail(err, errlen, s, "not a numeric IPv4 address");
	}
	return 0;
}

int addr_format(const struct sockaddr *sa, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN];
	int n;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		if (!inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)))
			return -EINVAL;
		n = snprintf(out, outlen, "%s:%u", host, ntohs(a->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		if (!inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)))
			return -EINVAL;
		n = snprintf(out, outlen, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		return -EINVAL;
	}
	return (n < 0 || (size_t)n >= outlen) ? -EINVAL : 0;
}

int addr_is_unspecified(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}
