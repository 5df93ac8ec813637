/* Go 1.19's sort.Slice (pattern-defeating quicksort, insertion sort up to
 * 12 elements, heapsort fallback, the xorshift of breakPatterns), step for
 * step: with a comparator that is not a strict weak order the result depends
 * on the algorithm, and hcsshim's compactext4 orders an inode's xattr block
 * with such a comparator. Byte identity with tar2ext4 needs the same order
 * (tests/layer/edge_tars.py's block_xattrs cases break under any other
 * sort). For ordinary comparators any sort would do. */
#ifndef LCOW_DISK_GO_SORT_H
#define LCOW_DISK_GO_SORT_H

#include <stdbool.h>
#include <stddef.h>

/* Sorts n elements of elem_size bytes at base (n < 2^31, elem_size <= 256)
 * as Go's sort.Slice(x, func(i, j int) bool { return less(&x[i], &x[j]) })
 * would. */
void lcow_go_sort_slice(void *base, size_t n, size_t elem_size,
                        bool (*less)(const void *a, const void *b));

#endif
