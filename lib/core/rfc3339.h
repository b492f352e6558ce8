/* RFC 3339 date-times ("2026-01-31T12:00:00.123Z", "...+02:00"): the one parser of the code base. Every
 * date-time that comes from outside (a command's or mail job's time, a CLI option, a cursor) is read here,
 * and what goes on to PostgreSQL is the canonical form this parser writes, never the text as it came. */
#ifndef RAIKOO_RFC3339_H
#define RAIKOO_RFC3339_H

#include <time.h>

/* 0 when s is an RFC 3339 date-time (section 5.6; "T" and "Z" in either case) that names a real instant,
 * with its time (seconds, the fraction dropped) in *out when out is not NULL; -1 otherwise (NULL s
 * included). Refused: a day the month does not have (2026-02-31, 2025-02-29; leap years by the Gregorian
 * rule), hour 24, minute 60, an offset beyond +-23:59. A leap second (second 60) is taken only where one
 * can be, at 23:59:60 UTC (the offset applied), and read as the first second of the next day, as POSIX
 * time and PostgreSQL count it. */
int rfc3339_parse(const char *s, time_t *out);

/* As rfc3339_parse, the time in microseconds since the epoch (a fraction cut after six digits). */
int rfc3339_parse_us(const char *s, long long *out);

/* Size of the canonical form: "YYYY-MM-DDTHH:MM:SS.ffffffZ" and its NUL. */
#define RFC3339_CANONICAL_SIZE 28

/* Writes s in canonical form (UTC, microseconds) into out: what PostgreSQL reads as exactly the instant
 * rfc3339_parse_us read. 0, or -1 when s is not an RFC 3339 date-time or its instant falls outside the
 * years 0001 to 9999 in UTC (out is then ""). */
int rfc3339_canonical(const char *s, char out[RFC3339_CANONICAL_SIZE]);

#endif
