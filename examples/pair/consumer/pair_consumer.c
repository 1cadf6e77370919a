// SPDX-License-Identifier: GPL-2.0
// Calls pair_producer's exported symbol: loads only after pair_producer.
#include <linux/init.h>
#include <linux/module.h>

int pair_producer_answer(void);

static int __init pair_consumer_init(void)
{
	int answer = pair_producer_answer();

	pr_info("pair_consumer: producer answered %d\n", answer);
	return answer == 42 ? 0 : -EINVAL;
}

static void __exit pair_consumer_exit(void)
{
}

module_init(pair_consumer_init);
module_exit(pair_consumer_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodfarm example: uses pair_producer's symbol");
