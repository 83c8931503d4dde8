/*
 * NAME
 *	clock.h - the monotonic clock in milliseconds, for every part of lib/
 *
 * DESCRIPTION
 *	CLOCK_MONOTONIC is the same in every process of the host, so its
 *	readings may be kept in the shared lock page; a vDSO read, no system
 *	call.  Lock deadlines, repair retries, reconnect limits use it.
 */
#ifndef SESSDB_CLOCK_H
#define SESSDB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif /* SESSDB_CLOCK_H */
