/* Assertions for the C test programs: a failed CHECK prints where and why,
 * the machine's log, and exits with status 1. */
#ifndef KMEM_TEST_CHECK_H
#define KMEM_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <kmem.h>

static inline void check_dump_dmesg(void)
{
	static char log[1 << 16];
	if (kmem_booted() && kmem_dmesg(log, sizeof(log)) > 0)
		fprintf(stderr, "--- dmesg ---\n%s--- end ---\n", log);
}

#define CHECK(cond) do {							\
	if (!(cond)) {								\
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		check_dump_dmesg();						\
		exit(1);							\
	}									\
} while (0)

#define CHECK_EQ(a, b) do {							\
	long long __a = (long long)(a), __b = (long long)(b);			\
	if (__a != __b) {							\
		fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", \
			__FILE__, __LINE__, #a, #b, __a, __b);			\
		check_dump_dmesg();						\
		exit(1);							\
	}									\
} while (0)

/* Bytes of the kernel log written since the last call (for "was this reported?"). */
static inline int dmesg_contains(const char *needle)
{
	static char log[1 << 17];
	kmem_dmesg(log, sizeof(log));
	return strstr(log, needle) != NULL;
}

#endif
