/*
 * linux/highmem.h on an i386-style machine (highmem=): HighMem pages have
 * no address until kmap'd; kmap shares a slot per page and page_address
 * finds it; kmap_local_page nests; kmap_atomic disables preemption; the
 * helpers copy and clear through temporary mappings. Lowmem pages are
 * always mapped.
 */
#include <linux/highmem.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/preempt.h>
#include "check.h"

int main(void)
{
	struct page *hi, *hi2, *lo;
	unsigned char *a, *b, *c, *l;
	char buf[64];
	unsigned long warnings;
	int i;

	CHECK_EQ(kmem_boot("quiet mem=256M highmem=128M nr_cpus=2"), 0);

	hi = alloc_page(GFP_HIGHUSER);
	hi2 = alloc_page(GFP_HIGHUSER | __GFP_ZERO);
	lo = alloc_page(GFP_KERNEL);
	CHECK(hi && hi2 && lo);
	CHECK(PageHighMem(hi) && PageHighMem(hi2) && !PageHighMem(lo));
	CHECK(page_address(hi) == NULL);

	/* kmap: one slot per page, found by page_address, kept until kunmap. */
	a = kmap(hi);
	CHECK(a != NULL);
	b = kmap(hi);
	CHECK(b == a);
	CHECK(page_address(hi) == a);
	memset(a, 0x11, PAGE_SIZE);
	kunmap(hi);
	kunmap(hi);

	/* kmap_local_page nests; undone in reverse order. */
	a = kmap_local_page(hi);
	c = kmap_local_page(hi2);
	CHECK(a && c && a != c);
	CHECK_EQ(a[100], 0x11);
	CHECK_EQ(c[100], 0); /* __GFP_ZERO reached HighMem too */
	c[0] = 0x22;
	kunmap_local(c);
	kunmap_local(a);

	/* kmap_atomic: atomic until kunmap_atomic. */
	CHECK(!in_atomic());
	a = kmap_atomic(hi2);
	CHECK(a != NULL && in_atomic());
	CHECK_EQ(a[0], 0x22);
	kunmap_atomic(a);
	CHECK(!in_atomic());

	/* Lowmem pages: their linear address. */
	l = kmap(lo);
	CHECK(l == page_address(lo));
	kunmap(lo);
	l = kmap_local_page(lo);
	CHECK(l == page_address(lo));
	kunmap_local(l);

	/* Helpers. */
	copy_highpage(lo, hi);
	CHECK_EQ(((unsigned char *)page_address(lo))[4095], 0x11);
	memcpy_to_page(hi, 1000, "highmem", 8);
	memcpy_from_page(buf, hi, 1000, 8);
	CHECK(strcmp(buf, "highmem") == 0);
	zero_user(hi, 1000, 4);
	memcpy_from_page(buf, hi, 1000, 8);
	CHECK(buf[0] == 0 && buf[3] == 0 && buf[4] == 'm');
	clear_highpage(hi);
	a = kmap_local_page(hi);
	for (i = 0; i < (int)PAGE_SIZE; i++)
		CHECK_EQ(a[i], 0);
	kunmap_local(a);

	/* kunmap of a page that is not mapped is reported. */
	warnings = kmem_warnings();
	kunmap(hi2);
	CHECK(kmem_warnings() > warnings);

	__free_page(hi);
	__free_page(hi2);
	__free_page(lo);
	printf("highmem: ok\n");
	return 0;
}
