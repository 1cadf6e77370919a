// SPDX-License-Identifier: GPL-2.0
/* A module for kernels with DAMON (data access monitoring); dkms.conf rules out the others. */
#include <linux/init.h>
#include <linux/module.h>

#ifndef CONFIG_DAMON
#error "kmf_damon needs a kernel with CONFIG_DAMON; its dkms.conf should have excluded this one"
#endif

static int __init kmf_damon_init(void)
{
	pr_info("kmf_damon: loaded on a kernel with DAMON\n");
	return 0;
}

static void __exit kmf_damon_exit(void)
{
	pr_info("kmf_damon: unloaded\n");
}

module_init(kmf_damon_init);
module_exit(kmf_damon_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodfarm example: a DKMS package that reads the kernel's .config");
