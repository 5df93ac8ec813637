/* No virtdisk outside Windows. */
#include <stdio.h>

#include "core/disk/vdisk.h"

const lcow_vdisk_ops *lcow_vdisk_system(void)
{
    return NULL;
}

bool lcow_vdisk_usable(char *why, size_t why_len)
{
    if (why && why_len)
        snprintf(why, why_len, "virtdisk exists only on Windows");
    return false;
}
