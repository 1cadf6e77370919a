// SPDX-License-Identifier: GPL-2.0
/* The second module of the package: depends on kmf_core. */
#include <linux/init.h>
#include <linux/module.h>

int kmf_core_answer(void);

static int __init kmf_client_init(void)
{
	pr_info("kmf_client: core answered %d\n", kmf_core_answer());
	return 0;
}

static void __exit kmf_client_exit(void)
{
	pr_info("kmf_client: unloaded\n");
}

module_init(kmf_client_init);
module_exit(kmf_client_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodfarm example: second module of a two-module DKMS package");
