/*
 * linux/gfp.h, linux/mm.h, asm/page.h: the page allocator through struct
 * page and through addresses, the seeds' page functions (get_zeroed_page,
 * __get_free_page(s), get_order, free_page(s), alloc_pages_node,
 * alloc_page(s), __free_page(s), free_hot_page, free_cold_page), the linear
 * map arithmetic, misuse reports, /proc/buddyinfo, and every page back.
 */
#include <linux/gfp.h>
#include <linux/mm.h>
#include <asm/page.h>
#include <stdint.h>
#include "check.h"

/* Free blocks of each order in the highest zone, from the last line of
 * /proc/buddyinfo ("Node 0, zone    DMA32      3      5 ..."). */
static void buddyinfo_top_zone(long counts[NR_PAGE_ORDERS])
{
	static char buf[8192];
	char *line, *nl;
	int i, off = 0, n;

	CHECK(kmem_proc_read("buddyinfo", buf, sizeof(buf)) > 0);
	nl = strrchr(buf, '\n');
	CHECK(nl != NULL);
	*nl = 0;
	line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	CHECK(strncmp(line, "Node 0, zone ", 13) == 0);
	line = strstr(line, "zone ") + 5;
	while (*line == ' ')
		line++;
	while (*line != ' ')
		line++;
	for (i = 0; i < NR_PAGE_ORDERS; i++) {
		CHECK(sscanf(line + off, "%ld%n", &counts[i], &n) == 1);
		off += n;
	}
}

int main(void)
{
	struct page *page, *pages[16];
	unsigned long addr, a2;
	unsigned char *p;
	long before[NR_PAGE_ORDERS], after[NR_PAGE_ORDERS];
	char why[4096];
	int i;

	CHECK_EQ(PAGE_SIZE, 4096);
	CHECK_EQ(PAGE_MASK, ~4095UL);
	CHECK_EQ(get_order(1), 0);
	CHECK_EQ(get_order(PAGE_SIZE), 0);
	CHECK_EQ(get_order(PAGE_SIZE + 1), 1);
	CHECK_EQ(get_order(16 * PAGE_SIZE), 4);

	/* struct page API. */
	page = alloc_pages(GFP_KERNEL | __GFP_ZERO, 2);
	CHECK(page != NULL);
	p = page_address(page);
	CHECK(p != NULL && ((uintptr_t)p & ~PAGE_MASK) == 0);
	for (i = 0; i < 4 * (int)PAGE_SIZE; i++)
		CHECK_EQ(p[i], 0);
	CHECK(virt_to_page(p) == page);
	CHECK(virt_to_page(p + PAGE_SIZE + 5) == pfn_to_page(page_to_pfn(page) + 1));
	CHECK(pfn_to_page(page_to_pfn(page)) == page);
	CHECK(pfn_valid(page_to_pfn(page)));
	CHECK_EQ(page_to_pfn(page), __pa(p) >> PAGE_SHIFT);
	CHECK(__va(__pa(p)) == (void *)p);
	CHECK(pfn_to_kaddr(page_to_pfn(page)) == (void *)p);
	CHECK(page_to_phys(page) == __pa(p));
	CHECK(!PageHighMem(page));
	__free_pages(page, 2);

	/* References: the last put_page frees the page. */
	page = alloc_page(GFP_KERNEL);
	CHECK(page != NULL);
	CHECK_EQ(page_count(page), 1);
	get_page(page);
	CHECK_EQ(page_count(page), 2);
	put_page(page);
	CHECK_EQ(page_count(page), 1);
	put_page(page);

	page = alloc_page(GFP_KERNEL);
	CHECK(page != NULL);
	__free_page(page);
	page = alloc_pages_node(0, GFP_KERNEL, 1);
	CHECK(page != NULL);
	__free_pages(page, 1);
	page = alloc_pages_node(NUMA_NO_NODE, GFP_ATOMIC, 0);
	CHECK(page != NULL);
	free_hot_page(page);
	page = alloc_pages(GFP_KERNEL | __GFP_COLD, 0);
	CHECK(page != NULL);
	free_cold_page(page);

	/* Address API. */
	addr = get_zeroed_page(GFP_KERNEL);
	CHECK(addr != 0 && (addr & ~PAGE_MASK) == 0);
	for (i = 0; i < (int)PAGE_SIZE; i++)
		CHECK_EQ(((unsigned char *)addr)[i], 0);
	memset((void *)addr, 0xee, PAGE_SIZE);
	free_page(addr);
	addr = __get_free_page(GFP_KERNEL);
	CHECK(addr != 0);
	free_page(addr);
	addr = __get_free_pages(GFP_KERNEL, get_order(5 * PAGE_SIZE));
	CHECK(addr != 0);
	memset((void *)addr, 1, 8 * PAGE_SIZE);
	free_pages(addr, 3);
	addr = __get_free_pages(GFP_DMA, 0);
	CHECK(addr != 0 && __pa(addr) < (16UL << 20));
	free_pages(addr, 0);
	free_pages(0, 0); /* ignored */

	/* alloc_pages_exact, split_page. */
	p = alloc_pages_exact(3 * PAGE_SIZE, GFP_KERNEL | __GFP_ZERO);
	CHECK(p != NULL && p[3 * PAGE_SIZE - 1] == 0);
	free_pages_exact(p, 3 * PAGE_SIZE);
	page = alloc_pages(GFP_KERNEL, 2);
	CHECK(page != NULL);
	split_page(page, 2);
	for (i = 0; i < 4; i++)
		__free_page(pfn_to_page(page_to_pfn(page) + i));

	/* The buddy lists see allocations: 16 order-4 blocks taken and returned. */
	buddyinfo_top_zone(before);
	for (i = 0; i < 16; i++)
		CHECK((pages[i] = alloc_pages(GFP_KERNEL, 4)) != NULL);
	buddyinfo_top_zone(after);
	CHECK(memcmp(before, after, sizeof(before)) != 0);
	for (i = 0; i < 16; i++)
		__free_pages(pages[i], 4);

	/* Misuse: a double free and a wrong order are reported, not obeyed. */
	page = alloc_pages(GFP_KERNEL, 3);
	CHECK(page != NULL);
	__free_pages(page, 2);
	CHECK(dmesg_contains("BUG: Bad page state"));
	a2 = __get_free_page(GFP_KERNEL);
	free_page(a2);
	free_page(a2);

	/* Totals. */
	CHECK(totalram_pages() > 0 && totalram_pages() <= (256UL << 20) / PAGE_SIZE);
	CHECK(nr_free_pages() > 0 && nr_free_pages() <= totalram_pages());
	CHECK(numa_node_id() == 0 && cpu_to_node(0) == 0);

	/* Everything came back. */
	CHECK(kmem_pages_all_free(why, sizeof(why)));

	printf("pages: ok\n");
	return 0;
}
