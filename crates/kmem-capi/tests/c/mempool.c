/*
 * linux/mempool.h: the seeds' mempool_create with the caller's own
 * allocator, the reserve when the allocator fails, the refill-before-free
 * rule, a sleeping mempool_alloc woken by a free from another thread,
 * mempool_resize, a pool embedded with mempool_init, and the ready-made
 * slab, kmalloc and page pools.
 */
#include <linux/mempool.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include "check.h"

struct request {
	int id;
	char data[60];
};

/* The pool's own allocator: kmalloc, or failure on demand. */
static atomic_int backing_fails;
static atomic_long allocs, frees;

static void *req_alloc(gfp_t gfp, void *pool_data)
{
	CHECK(pool_data == (void *)0x1234);
	if (atomic_load(&backing_fails))
		return NULL;
	atomic_fetch_add(&allocs, 1);
	return kmalloc(sizeof(struct request), gfp);
}

static void req_free(void *element, void *pool_data)
{
	CHECK(pool_data == (void *)0x1234);
	atomic_fetch_add(&frees, 1);
	kfree(element);
}

static mempool_t *pool;
static void *held[8];

static void *freer(void *arg)
{
	(void)arg;
	usleep(20000);
	mempool_free(held[0], pool);
	return NULL;
}

static void own_allocator(void)
{
	pthread_t t;
	void *e;
	int i;

	pool = mempool_create(4, req_alloc, req_free, (void *)0x1234);
	CHECK(pool != NULL);
	CHECK_EQ(atomic_load(&allocs), 4);           /* min_nr preallocated */
	CHECK_EQ(kmem_mempool_curr_nr(pool), 4);
	CHECK_EQ(kmem_mempool_min_nr(pool), 4);

	/* While the allocator works, elements come from it. */
	e = mempool_alloc(pool, GFP_KERNEL);
	CHECK(e != NULL);
	CHECK_EQ(kmem_mempool_curr_nr(pool), 4);
	/* The reserve is full: a free goes back to the allocator. */
	mempool_free(e, pool);
	CHECK_EQ(atomic_load(&frees), 1);

	/* The allocator fails: the reserve keeps us going, then NULL for atomic. */
	atomic_store(&backing_fails, 1);
	for (i = 0; i < 4; i++) {
		held[i] = mempool_alloc(pool, GFP_ATOMIC);
		CHECK(held[i] != NULL);
		((struct request *)held[i])->id = i;
	}
	CHECK_EQ(kmem_mempool_curr_nr(pool), 0);
	CHECK(mempool_alloc(pool, GFP_NOWAIT) == NULL);
	CHECK(mempool_alloc_preallocated(pool) == NULL);

	/* A sleeping allocation waits for an element to be freed. */
	CHECK(pthread_create(&t, NULL, freer, NULL) == 0);
	e = mempool_alloc(pool, GFP_KERNEL);
	CHECK(e == held[0]);
	CHECK(pthread_join(t, NULL) == 0);
	held[0] = e;

	/* Frees refill the reserve before anything goes back to the allocator. */
	atomic_store(&backing_fails, 0);
	for (i = 0; i < 4; i++)
		mempool_free(held[i], pool);
	CHECK_EQ(kmem_mempool_curr_nr(pool), 4);
	CHECK_EQ(atomic_load(&frees), 1);

	/* Resize: grow allocates, shrink frees. */
	CHECK_EQ(mempool_resize(pool, 10), 0);
	CHECK_EQ(kmem_mempool_min_nr(pool), 10);
	CHECK_EQ(kmem_mempool_curr_nr(pool), 10);
	CHECK_EQ(mempool_resize(pool, 2), 0);
	CHECK_EQ(kmem_mempool_curr_nr(pool), 2);

	mempool_destroy(pool);
	CHECK_EQ(atomic_load(&allocs), atomic_load(&frees));
	mempool_destroy(NULL);
}

struct device {
	int id;
	mempool_t pool; /* embedded */
};

static void ready_made(void)
{
	struct kmem_cache *cache = kmem_cache_create("req_cache", sizeof(struct request), 0, 0, NULL);
	struct device dev = { .id = 1 };
	mempool_t *kp, *pp, *sp;
	struct page *page;
	void *e, *f;

	CHECK(cache != NULL);
	sp = mempool_create_slab_pool(8, cache);
	CHECK(sp != NULL);
	e = mempool_alloc(sp, GFP_NOIO);
	CHECK(e != NULL);
	CHECK(kmem_cache_size(cache) == sizeof(struct request));
	mempool_free(e, sp);

	kp = mempool_create_kmalloc_pool(3, 256);
	CHECK(kp != NULL);
	e = mempool_alloc(kp, GFP_KERNEL);
	CHECK(e != NULL && ksize(e) == 256);
	mempool_free(e, kp);

	pp = mempool_create_page_pool(2, 1);
	CHECK(pp != NULL);
	page = mempool_alloc(pp, GFP_KERNEL);
	CHECK(page != NULL && page_address(page) != NULL);
	memset(page_address(page), 0, 2 * PAGE_SIZE);
	mempool_free(page, pp);

	/* A pool inside a structure of ours. */
	CHECK_EQ(mempool_init_kmalloc_pool(&dev.pool, 5, 100), 0);
	CHECK_EQ(kmem_mempool_curr_nr(&dev.pool), 5);
	e = mempool_alloc(&dev.pool, GFP_KERNEL);
	f = mempool_alloc(&dev.pool, GFP_KERNEL);
	CHECK(e && f && e != f);
	mempool_free(e, &dev.pool);
	mempool_free(f, &dev.pool);
	mempool_exit(&dev.pool);

	/* A pool destroyed with an element out is reported. */
	e = mempool_alloc(kp, GFP_KERNEL);
	mempool_destroy(kp);
	CHECK(dmesg_contains("still has 1 element outstanding"));
	kfree(e);

	mempool_destroy(pp);
	mempool_destroy(sp);
	CHECK_EQ(kmem_cache_destroy(cache), 0);
}

int main(void)
{
	own_allocator();
	ready_made();
	printf("mempool: ok\n");
	return 0;
}
