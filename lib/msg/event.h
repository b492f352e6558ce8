/* CloudEvents 1.0 in structured JSON mode: building the envelopes of commands, events, results, mail jobs. */
#ifndef RAIKOO_EVENT_H
#define RAIKOO_EVENT_H

#include <jansson.h>

#define EVENT_SOURCE_WORKER "/raikoo/command-worker"

/* The CloudEvents Kafka protocol binding's mark of a structured-mode message, a header every message the
 * system writes carries (docs/MESSAGES.md). */
#define EVENT_CONTENT_TYPE_HEADER "content-type"
#define EVENT_CONTENT_TYPE "application/cloudevents+json; charset=UTF-8"

/* A new envelope (new reference) of the given type around data (stolen). id NULL makes a fresh UUID;
 * actorid and correlationid are added as extensions when not NULL. */
json_t *event_new(const char *type, const char *id, const char *source, const char *actorid,
                  const char *correlationid, json_t *data);

/* Compact JSON text of an event (caller frees with free()). */
char *event_dump(const json_t *ev);

/* The current time as RFC 3339 UTC with milliseconds, into out (at least 32 bytes). */
void event_time_now(char *out);

/* 1 when s is an RFC 3339 date-time ("2026-01-31T12:00:00.123Z", "...+02:00"), else 0. */
int event_time_valid(const char *s);

#endif
