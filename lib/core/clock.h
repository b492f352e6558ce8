/* The monotonic clock every module measures time with (the workers and the producer library alike). */
#ifndef RAIKOO_CLOCK_H
#define RAIKOO_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC: for deadlines and durations, never for dates. */
int64_t clock_ms(void);

/* Seconds of the same clock, with its fraction: for rates and elapsed times shown to people. */
double clock_s(void);

#endif
