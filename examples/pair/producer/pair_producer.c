// SPDX-License-Identifier: GPL-2.0
// Exports a symbol that pair_consumer uses: its build needs this module's Module.symvers.
#include <linux/init.h>
#include <linux/module.h>

int pair_producer_answer(void)
{
	return 42;
}
EXPORT_SYMBOL(pair_producer_answer);

static int __init pair_producer_init(void)
{
	pr_info("pair_producer: loaded\n");
	return 0;
}

static void __exit pair_producer_exit(void)
{
}

module_init(pair_producer_init);
module_exit(pair_producer_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodfarm example: exports a symbol");
