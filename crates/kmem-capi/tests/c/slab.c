/*
 * linux/slab.h: the seeds' 2.6-style cache (six-argument kmem_cache_create
 * with constructor and destructor, kmem_cache_t, SLAB_CTOR_CONSTRUCTOR),
 * the modern five-argument form, KMEM_CACHE, bulk allocation, destroy with
 * objects remaining, and /proc/slabinfo parsed from kmem_proc_read.
 */
#include <linux/slab.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <stdint.h>
#include "check.h"

struct scullc_qset {
	void *data;
	unsigned long magic;
	char payload[80];
};

#define MAGIC 0x5ca11ab1eUL

static kmem_cache_t *scullc_cache;
static long ctor_calls, dtor_calls, ctor_bad_flags;

/* The 2.6 constructor: called for every object of a new slab. */
static void scullc_ctor(void *obj, kmem_cache_t *cache, unsigned long flags)
{
	struct scullc_qset *q = obj;

	if (cache != scullc_cache || !(flags & SLAB_CTOR_CONSTRUCTOR) || (flags & SLAB_CTOR_VERIFY))
		ctor_bad_flags++;
	q->data = NULL;
	q->magic = MAGIC;
	ctor_calls++;
}

static void scullc_dtor(void *obj, kmem_cache_t *cache, unsigned long flags)
{
	struct scullc_qset *q = obj;

	(void)flags;
	if (cache == scullc_cache && q->magic == MAGIC)
		dtor_calls++;
}

static long modern_ctor_calls;
static void modern_ctor(void *obj)
{
	memset(obj, 0x5a, 48);
	modern_ctor_calls++;
}

struct inode_like {
	unsigned long ino;
	int count;
	char name[40];
};

/* One line of /proc/slabinfo for `name`: active objects, objects, object size. */
static int slabinfo_line(const char *name, long *active, long *num, long *objsize)
{
	static char buf[1 << 16];
	char want[64];
	ssize_t n = kmem_proc_read("slabinfo", buf, sizeof(buf));
	char *line;

	CHECK(n > 0 && (size_t)n < sizeof(buf));
	CHECK(strncmp(buf, "slabinfo - version: 2.1\n", 24) == 0);
	snprintf(want, sizeof(want), "\n%s ", name);
	line = strstr(buf, want);
	if (!line)
		return 0;
	CHECK(sscanf(line + strlen(want), "%ld %ld %ld", active, num, objsize) == 3);
	return 1;
}

static void seeds_cache(void)
{
	struct scullc_qset *objs[100];
	long active, num, objsize;
	int i;

	/* The seeds' six-argument form. */
	scullc_cache = kmem_cache_create("scullc", sizeof(struct scullc_qset), 0,
					 SLAB_HWCACHE_ALIGN, scullc_ctor, scullc_dtor);
	CHECK(scullc_cache != NULL);
	CHECK_EQ(kmem_cache_size(scullc_cache), sizeof(struct scullc_qset));
	CHECK_EQ(ctor_calls, 0); /* slabs are built on demand */

	for (i = 0; i < 100; i++) {
		objs[i] = kmem_cache_alloc(scullc_cache, GFP_KERNEL);
		CHECK(objs[i] != NULL);
		CHECK_EQ(objs[i]->magic, MAGIC);        /* constructed */
		CHECK_EQ((uintptr_t)objs[i] % 64, 0);   /* SLAB_HWCACHE_ALIGN, 104-byte objects */
		objs[i]->data = objs[i];
	}
	CHECK(ctor_calls >= 100);
	CHECK_EQ(ctor_bad_flags, 0);
	CHECK(slabinfo_line("scullc", &active, &num, &objsize));
	CHECK_EQ(active, 100);
	CHECK(num >= 100 && num == ctor_calls);
	CHECK_EQ(objsize, 128);

	for (i = 0; i < 100; i++)
		kmem_cache_free(scullc_cache, objs[i]);
	CHECK(slabinfo_line("scullc", &active, &num, &objsize));
	CHECK_EQ(active, 0);

	/* Destroying the cache frees its slabs: the destructor sees every object. */
	CHECK_EQ(kmem_cache_destroy(scullc_cache), 0);
	CHECK_EQ(dtor_calls, ctor_calls);
	CHECK(!slabinfo_line("scullc", &active, &num, &objsize));

	/* A constructor that runs with SLAB_CTOR_ATOMIC: GFP_ATOMIC allocations. */
	ctor_calls = 0;
	scullc_cache = kmem_cache_create("scullc_atomic", 200, 8, 0, scullc_ctor, NULL);
	CHECK(scullc_cache != NULL);
	objs[0] = kmem_cache_alloc(scullc_cache, GFP_ATOMIC);
	CHECK(objs[0] != NULL && objs[0]->magic == MAGIC);
	kmem_cache_free(scullc_cache, objs[0]);
	CHECK_EQ(kmem_cache_destroy(scullc_cache), 0);
}

static void modern_cache(void)
{
	struct kmem_cache *c = kmem_cache_create("modern_objs", 48, 16, SLAB_HWCACHE_ALIGN, modern_ctor);
	struct kmem_cache *k;
	struct inode_like *in;
	unsigned char *p, *q;
	void *bulk[32];
	int i;

	CHECK(c != NULL);
	p = kmem_cache_alloc(c, GFP_KERNEL);
	CHECK(p != NULL);
	CHECK_EQ((uintptr_t)p % 16, 0);
	for (i = 0; i < 48; i++)
		CHECK_EQ(p[i], 0x5a);
	CHECK(modern_ctor_calls > 0);
	q = kmem_cache_alloc_node(c, GFP_KERNEL, NUMA_NO_NODE);
	CHECK(q != NULL && q != p);
	kmem_cache_free(c, p);
	kmem_cache_free(c, q);

	CHECK_EQ(kmem_cache_alloc_bulk(c, GFP_KERNEL, 32, bulk), 32);
	for (i = 1; i < 32; i++)
		CHECK(bulk[i] != bulk[i - 1]);
	kmem_cache_free_bulk(c, 32, bulk);
	kmem_cache_shrink(c);
	CHECK_EQ(kmem_cache_destroy(c), 0);

	/* KMEM_CACHE and kmem_cache_zalloc. */
	k = KMEM_CACHE(inode_like, 0);
	CHECK(k != NULL);
	in = kmem_cache_zalloc(k, GFP_KERNEL);
	CHECK(in != NULL && in->ino == 0 && in->count == 0 && in->name[39] == 0);
	in->ino = 42;

	/* Destroying a cache with an object left: the kernel's report, and 1. */
	CHECK_EQ(kmem_cache_destroy(k), 1);
	CHECK(dmesg_contains("kmem_cache_destroy inode_like: Slab cache still has objects"));
	/* Destroyed twice: reported, and 1 (the kernel would use freed memory). */
	CHECK_EQ(kmem_cache_destroy(k), 1);
	CHECK(dmesg_contains("is not a live cache (destroyed already?)"));

	/* Bad arguments: NULL (and the kernel's message), never ERR_PTR. */
	CHECK(kmem_cache_create("too_big", (size_t)1 << 40, 0, 0, NULL) == NULL);
	CHECK(dmesg_contains("__kmem_cache_create_args(too_big) failed with error -22"));
}

int main(void)
{
	seeds_cache();
	modern_cache();
	printf("slab: ok\n");
	return 0;
}
