// SPDX-License-Identifier: GPL-2.0
/*
 * mvisor guest-kit test module, built into the test kernel (drivers/misc).
 *
 * Guest user space cannot make system calls on nested KVM without hardware
 * virtualization (see DEVELOPERS.md), so the facts the host-side tests need
 * are printed from kernel mode, as `mvtest: key=value` lines on the console,
 * by a late initcall that runs after every driver and before /init.
 *
 * Parameters (kernel command line):
 *   mvisor_test.action=reboot|poweroff|halt|none   what to do when done
 *   mvisor_test.action=power-key   wait for KEY_POWER (the ACPI power button
 *                                  reports it), then power off: what acpid
 *                                  or logind do in user space
 *   mvisor_test.disks=vda,sda,...  for each disk: print the CRC-32 of the
 *                                  4 KiB at sector 8 (the host's pattern),
 *                                  write "mvisor:<name>:<i>" lines over
 *                                  sectors 16-23, read them back
 *   mvisor_test.write_loop=sda     after the rest, write 4 KiB blocks over
 *                                  the disk forever (a crash-consistency
 *                                  test kills the VMM meanwhile)
 *   mvisor_test.bench=vda,sda      time 4 KiB random and 64 KiB sequential
 *                                  reads and writes on each disk (bench/storage)
 *   mvisor_test.iso=sr0:/path      mount the CD as iso9660 and print the
 *                                  file's size and CRC-32
 *   mvisor_test.enable=0                           skip everything
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/cpumask.h>
#include <linux/mm.h>
#include <linux/rtc.h>
#include <linux/reboot.h>
#include <linux/fs.h>
#include <linux/initrd.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/utsname.h>
#include <linux/input.h>
#include <linux/completion.h>
#include <linux/blkdev.h>
#include <linux/bio.h>
#include <linux/crc32.h>
#include <linux/mount.h>
#include <uapi/linux/mount.h>
#include <linux/init_syscalls.h>
#include <linux/async.h>
#include <linux/device/driver.h>
#include <linux/vmalloc.h>

static char *action = "reboot";
module_param(action, charp, 0);
static int enable = 1;
module_param(enable, int, 0);
static char *disks = "";
module_param(disks, charp, 0);
static char *iso = "";
module_param(iso, charp, 0);
static char *write_loop = "";
module_param(write_loop, charp, 0);
static char *bench = "";
module_param(bench, charp, 0);
static int bench_ops = 1000;
module_param(bench_ops, int, 0);

#define MVTEST_IO 4096

/* One synchronous 4 KiB transfer at `sector`. */
static int mvtest_bio(struct block_device *bdev, blk_opf_t op, sector_t sector, struct page *page)
{
	struct bio *bio = bio_alloc(bdev, 1, op, GFP_KERNEL);
	int err;

	bio->bi_iter.bi_sector = sector;
	__bio_add_page(bio, page, MVTEST_IO, 0);
	err = submit_bio_wait(bio);
	bio_put(bio);
	return err;
}

static void mvtest_disk(const char *name)
{
	char path[40];
	struct block_device *bdev;
	struct page *page, *back;
	char *buf;
	dev_t devt;
	int err, i, n = 0;

	snprintf(path, sizeof(path), "/dev/%s", name);
	devt = name_to_dev_t(path);
	if (!devt) {
		pr_info("mvtest: disk_%s=absent\n", name);
		return;
	}
	bdev = blkdev_get_by_dev(devt, FMODE_READ | FMODE_WRITE, NULL);
	if (IS_ERR(bdev)) {
		pr_info("mvtest: disk_%s=error%ld\n", name, PTR_ERR(bdev));
		return;
	}
	page = alloc_page(GFP_KERNEL);
	back = alloc_page(GFP_KERNEL);
	if (!page || !back)
		goto out;
	pr_info("mvtest: disk_%s_sectors=%llu\n", name, (unsigned long long)bdev_nr_sectors(bdev));
	err = mvtest_bio(bdev, REQ_OP_READ, 8, page);
	if (err)
		pr_info("mvtest: disk_%s_read=error%d\n", name, err);
	else
		pr_info("mvtest: disk_%s_read_crc=%08x\n", name,
			crc32_le(~0, page_address(page), MVTEST_IO) ^ ~0);
	buf = page_address(page);
	memset(buf, 0, MVTEST_IO);
	for (i = 0; n < MVTEST_IO - 32; i++)
		n += scnprintf(buf + n, MVTEST_IO - n, "mvisor:%s:%d\n", name, i);
	err = mvtest_bio(bdev, REQ_OP_WRITE | REQ_SYNC | REQ_FUA, 16, page);
	if (!err)
		err = mvtest_bio(bdev, REQ_OP_READ, 16, back);
	if (err)
		pr_info("mvtest: disk_%s_write=error%d\n", name, err);
	else
		pr_info("mvtest: disk_%s_write=%s\n", name,
			memcmp(page_address(page), page_address(back), MVTEST_IO) ? "mismatch" : "ok");
out:
	if (page)
		__free_page(page);
	if (back)
		__free_page(back);
	blkdev_put(bdev, FMODE_READ | FMODE_WRITE);
}

static void mvtest_write_loop(void)
{
	char path[40];
	struct block_device *bdev;
	struct page *page;
	sector_t sectors, s = 0;
	unsigned long round = 0;
	dev_t devt;

	snprintf(path, sizeof(path), "/dev/%s", write_loop);
	devt = name_to_dev_t(path);
	bdev = devt ? blkdev_get_by_dev(devt, FMODE_READ | FMODE_WRITE, NULL) : ERR_PTR(-ENODEV);
	page = alloc_page(GFP_KERNEL);
	if (IS_ERR(bdev) || !page) {
		pr_info("mvtest: write_loop=error\n");
		return;
	}
	sectors = bdev_nr_sectors(bdev) & ~7ULL;
	pr_info("mvtest: write_loop=started\n");
	for (;;) {
		memset(page_address(page), (int)(round & 0xff), MVTEST_IO);
		if (mvtest_bio(bdev, REQ_OP_WRITE, s, page))
			break;
		s += 8 * 97; /* spread the writes over many clusters */
		if (s + 8 > sectors) {
			s %= 8 * 97;
			s += 8;
			s %= sectors;
			round++;
			pr_info("mvtest: write_loop_round=%lu\n", round);
		}
		cond_resched();
	}
	pr_info("mvtest: write_loop=error\n");
}

/* `ops` synchronous transfers of `pages` pages each, sequential or at pseudo-random offsets. */
static void mvtest_bench_one(struct block_device *bdev, const char *name, const char *what,
			     blk_opf_t op, int pages, bool random)
{
	sector_t sectors = bdev_nr_sectors(bdev), pos = 0, span = pages * 8;
	struct page *page = alloc_pages(GFP_KERNEL, ilog2(pages));
	u32 rnd = 12345;
	ktime_t t0;
	s64 us;
	int i, err = 0;

	if (!page || sectors < 2 * span) {
		pr_info("mvtest: bench_%s_%s=error\n", name, what);
		if (page)
			__free_pages(page, ilog2(pages));
		return;
	}
	memset(page_address(page), 0x5a, pages * PAGE_SIZE);
	t0 = ktime_get();
	for (i = 0; i < bench_ops && !err; i++) {
		struct bio *bio = bio_alloc(bdev, 1, op, GFP_KERNEL);

		if (random) {
			rnd = rnd * 1103515245 + 12345;
			pos = ((sector_t)rnd % (sectors / span)) * span;
		} else if (pos + span > sectors) {
			pos = 0;
		}
		bio->bi_iter.bi_sector = pos;
		__bio_add_page(bio, page, pages * PAGE_SIZE, 0);
		err = submit_bio_wait(bio);
		bio_put(bio);
		if (!random)
			pos += span;
	}
	us = ktime_us_delta(ktime_get(), t0);
	__free_pages(page, ilog2(pages));
	if (err)
		pr_info("mvtest: bench_%s_%s=error%d\n", name, what, err);
	else
		pr_info("mvtest: bench_%s_%s_ops=%d bench_%s_%s_us=%lld bench_%s_%s_bytes=%lu\n",
			name, what, i, name, what, us, name, what, (unsigned long)i * pages * PAGE_SIZE);
}

static void mvtest_bench(void)
{
	char *list, *p, *name, path[40];
	struct block_device *bdev;
	dev_t devt;

	if (!*bench)
		return;
	list = kstrdup(bench, GFP_KERNEL);
	for (p = list; list && (name = strsep(&p, ",")) != NULL;) {
		snprintf(path, sizeof(path), "/dev/%s", name);
		devt = name_to_dev_t(path);
		bdev = devt ? blkdev_get_by_dev(devt, FMODE_READ | FMODE_WRITE, NULL) : ERR_PTR(-ENODEV);
		if (IS_ERR(bdev)) {
			pr_info("mvtest: bench_%s=absent\n", name);
			continue;
		}
		mvtest_bench_one(bdev, name, "randread", REQ_OP_READ, 1, true);
		mvtest_bench_one(bdev, name, "randwrite", REQ_OP_WRITE, 1, true);
		mvtest_bench_one(bdev, name, "seqread", REQ_OP_READ, 16, false);
		mvtest_bench_one(bdev, name, "seqwrite", REQ_OP_WRITE, 16, false);
		blkdev_put(bdev, FMODE_READ | FMODE_WRITE);
	}
	kfree(list);
	pr_info("mvtest: bench=done\n");
}

static void mvtest_disks(void)
{
	char *list, *p, *name;

	if (!*disks)
		return;
	list = kstrdup(disks, GFP_KERNEL);
	if (!list)
		return;
	for (p = list; (name = strsep(&p, ",")) != NULL;)
		if (*name)
			mvtest_disk(name);
	kfree(list);
}

static void mvtest_iso(void)
{
	char dev[40], *file, *buf;
	struct file *f;
	loff_t pos = 0;
	ssize_t n;
	u32 crc = ~0;
	long size = 0;
	int err;

	if (!*iso)
		return;
	file = strchr(iso, ':');
	if (!file)
		return;
	snprintf(dev, sizeof(dev), "/dev/%.*s", (int)(file - iso), iso);
	file++;
	init_mkdir("/dev", 0755);
	init_mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	init_mkdir("/mvtest-iso", 0755);
	err = init_mount(dev, "/mvtest-iso", "iso9660", MS_RDONLY, NULL);
	if (err) {
		pr_info("mvtest: iso=mount-error%d\n", err);
		return;
	}
	buf = kmalloc(MVTEST_IO, GFP_KERNEL);
	snprintf(dev, sizeof(dev), "/mvtest-iso%s", file);
	f = filp_open(dev, O_RDONLY, 0);
	if (IS_ERR(f) || !buf) {
		pr_info("mvtest: iso=open-error\n");
	} else {
		while ((n = kernel_read(f, buf, MVTEST_IO, &pos)) > 0) {
			crc = crc32_le(crc, buf, n);
			size += n;
		}
		pr_info("mvtest: iso_size=%ld iso_crc=%08x\n", size, crc ^ ~0);
		filp_close(f, NULL);
	}
	kfree(buf);
}

static void mvtest_rtc(void)
{
	struct rtc_device *rtc = rtc_class_open("rtc0");
	struct rtc_time tm;
	int err;

	if (!rtc) {
		pr_info("mvtest: rtc=absent\n");
		return;
	}
	err = rtc_read_time(rtc, &tm);
	if (err)
		pr_info("mvtest: rtc=error%d\n", err);
	else
		pr_info("mvtest: rtc_epoch=%lld rtc=%ptRs\n",
			(long long)rtc_tm_to_time64(&tm), &tm);
	rtc_class_close(rtc);
}

static void mvtest_initramfs(void)
{
	struct file *f = filp_open("/mvisor-facts", O_RDONLY, 0);
	char *buf;
	loff_t pos = 0;
	ssize_t n;

	if (IS_ERR(f)) {
		pr_info("mvtest: initramfs=absent\n");
		return;
	}
	buf = kzalloc(128, GFP_KERNEL);
	if (buf) {
		n = kernel_read(f, buf, 127, &pos);
		if (n > 0) {
			strim(buf);
			pr_info("mvtest: initramfs=%s\n", buf);
		}
		kfree(buf);
	}
	filp_close(f, NULL);
}

static DECLARE_COMPLETION(mvtest_power_key);

static void mvtest_input_event(struct input_handle *handle, unsigned int type,
			       unsigned int code, int value)
{
	if (type == EV_KEY && code == KEY_POWER && value == 1)
		complete(&mvtest_power_key);
}

static int mvtest_input_connect(struct input_handler *handler,
				struct input_dev *dev,
				const struct input_device_id *id)
{
	struct input_handle *handle = kzalloc(sizeof(*handle), GFP_KERNEL);
	int err;

	if (!handle)
		return -ENOMEM;
	handle->dev = dev;
	handle->handler = handler;
	handle->name = "mvtest";
	err = input_register_handle(handle);
	if (err)
		goto free;
	err = input_open_device(handle);
	if (err)
		goto unregister;
	pr_info("mvtest: power_key_source=\"%s\"\n", dev->name);
	return 0;
unregister:
	input_unregister_handle(handle);
free:
	kfree(handle);
	return err;
}

static void mvtest_input_disconnect(struct input_handle *handle)
{
	input_close_device(handle);
	input_unregister_handle(handle);
	kfree(handle);
}

static const struct input_device_id mvtest_input_ids[] = {
	{
		.flags = INPUT_DEVICE_ID_MATCH_EVBIT | INPUT_DEVICE_ID_MATCH_KEYBIT,
		.evbit = { BIT_MASK(EV_KEY) },
		.keybit = { [BIT_WORD(KEY_POWER)] = BIT_MASK(KEY_POWER) },
	},
	{},
};

static struct input_handler mvtest_input_handler = {
	.event = mvtest_input_event,
	.connect = mvtest_input_connect,
	.disconnect = mvtest_input_disconnect,
	.name = "mvtest",
	.id_table = mvtest_input_ids,
};

static int __init mvtest_init(void)
{
	if (!enable)
		return 0;
	/* initramfs is unpacked asynchronously (initramfs_async) */
	wait_for_initramfs();
	pr_info("mvtest: begin kernel=%s\n", init_utsname()->release);
	pr_info("mvtest: cpus_online=%u cpus_possible=%u\n",
		num_online_cpus(), num_possible_cpus());
	pr_info("mvtest: mem_kb=%lu\n",
		get_num_physpages() << (PAGE_SHIFT - 10));
	mvtest_rtc();
	mvtest_initramfs();
	if (*disks || *iso || *bench) {
		/* libata and SCSI probe asynchronously; wait as the root mount does. */
		wait_for_device_probe();
		async_synchronize_full();
		mvtest_disks();
		mvtest_iso();
		mvtest_bench();
	}
	if (*write_loop) {
		wait_for_device_probe();
		async_synchronize_full();
		mvtest_write_loop();
	}
	if (!strcmp(action, "power-key") && input_register_handler(&mvtest_input_handler))
		pr_info("mvtest: power_key_source=error\n");
	pr_info("mvtest: done action=%s\n", action);
	if (!strcmp(action, "power-key")) {
		wait_for_completion(&mvtest_power_key);
		pr_info("mvtest: power_key=pressed\n");
		kernel_power_off();
	} else if (!strcmp(action, "reboot"))
		kernel_restart(NULL);
	else if (!strcmp(action, "poweroff"))
		kernel_power_off();
	else if (!strcmp(action, "halt"))
		kernel_halt();
	return 0;
}
late_initcall_sync(mvtest_init);
