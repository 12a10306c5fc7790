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

static char *action = "reboot";
module_param(action, charp, 0);
static int enable = 1;
module_param(enable, int, 0);

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
