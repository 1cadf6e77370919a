// SPDX-License-Identifier: GPL-2.0
// The smallest useful out-of-tree module: kmodfarm's example driver.
#include <linux/init.h>
#include <linux/module.h>

static int __init hello_init(void)
{
	pr_info("hello: loaded\n");
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("hello: unloaded\n");
}

module_init(hello_init);
module_exit(hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodfarm example: hello");
MODULE_VERSION("0.1.1");
