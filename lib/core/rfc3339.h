/* RFC 3339 date-times ("2026-01-31T12:00:00.123Z", "...+02:00"). */
#ifndef RAIKOO_RFC3339_H
#define RAIKOO_RFC3339_H

#include <time.h>

/* 0 when s is an RFC 3339 date-time (section 5.6; "T" and "Z" in either case), with its time (seconds,
 * the fraction dropped) in *out when out is not NULL; -1 otherwise (NULL s included). */
int rfc3339_parse(const char *s, time_t *out);

#endif
