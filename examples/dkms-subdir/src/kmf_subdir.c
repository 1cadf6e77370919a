// SPDX-License-Identifier: GPL-2.0
/* A DKMS-packaged module in a subdirectory; generated.h comes from PRE_BUILD. */
#include <linux/init.h>
#include <linux/module.h>

#include "generated.h"

static int __init kmf_subdir_init(void)
{
	pr_info("kmf_subdir: loaded, built for %s\n", KMF_BUILT_FOR);
	return 0;
}

static void __exit kmf_subdir_exit(void)
{
	pr_info("kmf_subdir: unloaded\n");
}

module_init(kmf_subdir_init);
module_exit(kmf_subdir_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmodfarm example: a DKMS package with its module in a subdirectory");
/* kernel-series marker */
