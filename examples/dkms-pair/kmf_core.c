// SPDX-License-Identifier: GPL-2.0
/* The first of two modules built by one DKMS package: exports a function the second one calls. */
#include <linux/init.h>
#include <linux/module.h>

int kmf_core_answer(void)
{
	return 7;
}
EXPORT_SYMBOL_GPL(kmf_core_answer);

static int __init kmf_core_init(void)
{
	pr_info("kmf_core: loaded\n");
	return 0;
}

static void __exit kmf_core_exit(void)
{
	pr_info("kmf_core: unloaded\n");
}

module_init(kmf_core_init);
module_exit(kmf_core_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodfarm example: first module of a two-module DKMS package");
