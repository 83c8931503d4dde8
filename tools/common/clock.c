/*
 * NAME
 *	clock.c - a monotonic clock for progress lines, timings and rates
 *
 * DESCRIPTION
 *	CLOCK_MONOTONIC does not jump with the wall clock, so intervals
 *	measured with it stay right across an NTP step.  It is never used
 *	for session times, which are unix seconds (sessdb_now).
 */
#include <time.h>

#include "tooling.h"

/* tool_now_ms - monotonic milliseconds. */
int64_t
tool_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* tool_now_s - monotonic seconds, with nanoseconds as the fraction. */
double
tool_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
