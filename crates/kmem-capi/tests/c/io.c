/*
 * asm/io.h: a "device" (a memfd standing for its registers) registered at
 * a free physical address, ioremap'd, and driven with writel/readl: stores
 * through the mapping are the device's bytes. ioremap of RAM is refused
 * with the kernel's warning; iounmap of a bad address is reported;
 * reserved low RAM can be mapped; /proc/iomem and /proc/vmallocinfo show
 * the device and the mapping.
 */
#define _GNU_SOURCE
#include <asm/io.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <sys/mman.h>
#include <unistd.h>
#include <errno.h>
#include "check.h"

#define DEV_PHYS 0xe0000000ULL /* in the PCI hole below 4 GiB */
#define DEV_SIZE (64 * 1024)

int main(void)
{
	static char text[1 << 15];
	void __iomem *regs;
	unsigned char bytes[16], back[16];
	uint32_t v;
	void *ram;
	int fd, i;

	fd = memfd_create("fake-nic", 0);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, DEV_SIZE) == 0);
	CHECK_EQ(kmem_register_iomem("fake-nic", DEV_PHYS, DEV_SIZE, fd, 0), 0);
	CHECK_EQ(kmem_register_iomem("again", DEV_PHYS, DEV_SIZE, fd, 0), -EBUSY);
	CHECK_EQ(kmem_register_iomem("unaligned", DEV_PHYS + DEV_SIZE + 1, 4096, fd, 0), -EINVAL);
	CHECK(kmem_proc_read("iomem", text, sizeof(text)) > 0);
	CHECK(strstr(text, "e0000000-e000ffff : fake-nic") != NULL);

	regs = ioremap(DEV_PHYS + 0x1000, 0x100);
	CHECK(regs != NULL && is_vmalloc_addr((void *)regs));
	writel(0xdeadbeef, regs + 0x10);
	writew(0x1234, regs + 0x20);
	writeb(0x56, regs + 0x22);
	writeq(0x0102030405060708ULL, regs + 0x28);
	CHECK_EQ(readl(regs + 0x10), 0xdeadbeef);
	CHECK_EQ(ioread16(regs + 0x20), 0x1234);
	CHECK_EQ(ioread8(regs + 0x22), 0x56);
	CHECK(readq(regs + 0x28) == 0x0102030405060708ULL);
	/* The device sees the stores (little-endian registers). */
	CHECK(pread(fd, &v, 4, 0x1010) == 4);
	CHECK_EQ(v, 0xdeadbeef);
	v = 0xcafef00d;
	CHECK(pwrite(fd, &v, 4, 0x1040) == 4);
	CHECK_EQ(ioread32(regs + 0x40), 0xcafef00d);
	iowrite32(7, regs + 0x44);
	CHECK_EQ(readl_relaxed(regs + 0x44), 7);

	for (i = 0; i < 16; i++)
		bytes[i] = (unsigned char)(i * 3);
	memcpy_toio(regs + 0x80, bytes, 16);
	memcpy_fromio(back, regs + 0x80, 16);
	CHECK(memcmp(bytes, back, 16) == 0);
	memset_io(regs + 0x80, 0xaa, 16);
	CHECK_EQ(readb(regs + 0x8f), 0xaa);

	CHECK(kmem_proc_read("vmallocinfo", text, sizeof(text)) > 0);
	CHECK(strstr(text, "phys=0x00000000e0001000 ioremap") != NULL);
	iounmap(regs);

	/* Other cache modes map the same device. */
	regs = ioremap_wc(DEV_PHYS, DEV_SIZE);
	CHECK(regs != NULL && readl(regs + 0x1010) == 0xdeadbeef);
	iounmap(regs);
	regs = ioremap_uc(DEV_PHYS, 4096);
	CHECK(regs != NULL);
	iounmap(regs);
	regs = ioremap_cache(DEV_PHYS, 4096);
	CHECK(regs != NULL);
	iounmap(regs);

	/* RAM the page allocator owns is refused. */
	ram = kmalloc(64, GFP_KERNEL);
	CHECK(ioremap(__pa(ram), 64) == NULL);
	CHECK(dmesg_contains("ioremap on RAM at"));
	kfree(ram);
	CHECK(ioremap(DEV_PHYS, 0) == NULL);

	/* Reserved RAM below 1 MiB (BIOS data) maps, aliasing the linear map. */
	regs = ioremap(0x2000, 4096);
	CHECK(regs != NULL);
	writel(0x600dcafe, regs + 8);
	CHECK_EQ(*(volatile uint32_t *)__va(0x2008), 0x600dcafe);
	iounmap(regs);
	/* So do the EBDA page (straddling the end of the low RAM range, never the
	 * page allocator's), the VGA window and the BIOS ROM: the first MiB maps
	 * whatever the firmware map says. */
	regs = ioremap(0x9f000, 4096);
	CHECK(regs != NULL);
	iounmap(regs);
	regs = ioremap(0xa0000, 0x20000);
	CHECK(regs != NULL);
	writeb(0x5a, regs + 0x100);
	CHECK_EQ(readb(regs + 0x100), 0x5a);
	iounmap(regs);
	regs = ioremap(0xf0000, 0x10000);
	CHECK(regs != NULL);
	iounmap(regs);

	/* iounmap of something ioremap did not return: outside the window, and
	 * inside a mapping but not its start. Both reported, nothing unmapped. */
	iounmap(text);
	CHECK(dmesg_contains("is not in the ioremap area"));
	regs = ioremap(DEV_PHYS, 2 * PAGE_SIZE);
	CHECK(regs != NULL);
	iounmap(regs + PAGE_SIZE);
	CHECK(dmesg_contains("iounmap: bad address"));
	CHECK_EQ(readl(regs + 0x1010), 0xdeadbeef);
	iounmap(regs);

	close(fd);
	printf("io: ok\n");
	return 0;
}
