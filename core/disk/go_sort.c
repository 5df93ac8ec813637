/* Go 1.19's sort.Slice (see go_sort.h): zsortfunc.go's pdqsort_func with its
 * helpers, the same comparisons and swaps in the same order. */
#include "core/disk/go_sort.h"

#include <stdint.h>
#include <string.h>

typedef struct gosort {
    unsigned char *v;
    size_t size;
    bool (*less)(const void *a, const void *b);
} gosort;

static bool gs_less(gosort *s, int i, int j)
{
    return s->less(s->v + (size_t)i * s->size, s->v + (size_t)j * s->size);
}

static void gs_swap(gosort *s, int i, int j)
{
    unsigned char t[256];
    unsigned char *a = s->v + (size_t)i * s->size, *b = s->v + (size_t)j * s->size;
    memcpy(t, a, s->size);
    memcpy(a, b, s->size);
    memcpy(b, t, s->size);
}

static void gs_insertion(gosort *s, int a, int b)
{
    for (int i = a + 1; i < b; i++)
        for (int j = i; j > a && gs_less(s, j, j - 1); j--)
            gs_swap(s, j, j - 1);
}

static void gs_sift_down(gosort *s, int lo, int hi, int first)
{
    int root = lo;
    for (;;) {
        int child = 2 * root + 1;
        if (child >= hi)
            return;
        if (child + 1 < hi && gs_less(s, first + child, first + child + 1))
            child++;
        if (!gs_less(s, first + root, first + child))
            return;
        gs_swap(s, first + root, first + child);
        root = child;
    }
}

static void gs_heapsort(gosort *s, int a, int b)
{
    int first = a, hi = b - a;
    for (int i = (hi - 1) / 2; i >= 0; i--)
        gs_sift_down(s, i, hi, first);
    for (int i = hi - 1; i >= 0; i--) {
        gs_swap(s, first, first + i);
        gs_sift_down(s, 0, i, first);
    }
}

static int bit_len(unsigned x)
{
    int n = 0;
    while (x) {
        n++;
        x >>= 1;
    }
    return n;
}

static void gs_break_patterns(gosort *s, int a, int b)
{
    int length = b - a;
    if (length < 8)
        return;
    uint64_t r = (uint64_t)length;
    unsigned modulus = 1u << bit_len((unsigned)length);
    for (int idx = a + (length / 4) * 2 - 1; idx <= a + (length / 4) * 2 + 1; idx++) {
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        int other = (int)((unsigned)r & (modulus - 1));
        if (other >= length)
            other -= length;
        gs_swap(s, idx, a + other);
    }
}

static void gs_order2(gosort *s, int *a, int *b, int *swaps)
{
    if (gs_less(s, *b, *a)) {
        int t = *a;
        *a = *b;
        *b = t;
        (*swaps)++;
    }
}

static int gs_median(gosort *s, int a, int b, int c, int *swaps)
{
    gs_order2(s, &a, &b, swaps);
    gs_order2(s, &b, &c, swaps);
    gs_order2(s, &a, &b, swaps);
    return b;
}

enum { HINT_UNKNOWN, HINT_INCREASING, HINT_DECREASING };

static int gs_choose_pivot(gosort *s, int a, int b, int *hint)
{
    int l = b - a, swaps = 0;
    int i = a + l / 4 * 1, j = a + l / 4 * 2, k = a + l / 4 * 3;
    if (l >= 8) {
        if (l >= 50) {
            i = gs_median(s, i - 1, i, i + 1, &swaps);
            j = gs_median(s, j - 1, j, j + 1, &swaps);
            k = gs_median(s, k - 1, k, k + 1, &swaps);
        }
        j = gs_median(s, i, j, k, &swaps);
    }
    *hint = swaps == 0 ? HINT_INCREASING : swaps == 12 ? HINT_DECREASING : HINT_UNKNOWN;
    return j;
}

static bool gs_partial_insertion(gosort *s, int a, int b)
{
    int i = a + 1;
    for (int step = 0; step < 5; step++) {
        while (i < b && !gs_less(s, i, i - 1))
            i++;
        if (i == b)
            return true;
        if (b - a < 50)
            return false;
        gs_swap(s, i, i - 1);
        if (i - a >= 2)
            for (int j = i - 1; j >= 1; j--) {
                if (!gs_less(s, j, j - 1))
                    break;
                gs_swap(s, j, j - 1);
            }
        if (b - i >= 2)
            for (int j = i + 1; j < b; j++) {
                if (!gs_less(s, j, j - 1))
                    break;
                gs_swap(s, j, j - 1);
            }
    }
    return false;
}

static int gs_partition_equal(gosort *s, int a, int b, int pivot)
{
    gs_swap(s, a, pivot);
    int i = a + 1, j = b - 1;
    for (;;) {
        while (i <= j && !gs_less(s, a, i))
            i++;
        while (i <= j && gs_less(s, a, j))
            j--;
        if (i > j)
            break;
        gs_swap(s, i, j);
        i++;
        j--;
    }
    return i;
}

static int gs_partition(gosort *s, int a, int b, int pivot, bool *already)
{
    gs_swap(s, a, pivot);
    int i = a + 1, j = b - 1;
    while (i <= j && gs_less(s, i, a))
        i++;
    while (i <= j && !gs_less(s, j, a))
        j--;
    if (i > j) {
        gs_swap(s, j, a);
        *already = true;
        return j;
    }
    gs_swap(s, i, j);
    i++;
    j--;
    for (;;) {
        while (i <= j && gs_less(s, i, a))
            i++;
        while (i <= j && !gs_less(s, j, a))
            j--;
        if (i > j)
            break;
        gs_swap(s, i, j);
        i++;
        j--;
    }
    gs_swap(s, j, a);
    *already = false;
    return j;
}

static void gs_pdqsort(gosort *s, int a, int b, int limit)
{
    bool balanced = true, partitioned = true;
    for (;;) {
        int length = b - a;
        if (length <= 12) {
            gs_insertion(s, a, b);
            return;
        }
        if (limit == 0) {
            gs_heapsort(s, a, b);
            return;
        }
        if (!balanced) {
            gs_break_patterns(s, a, b);
            limit--;
        }
        int hint;
        int pivot = gs_choose_pivot(s, a, b, &hint);
        if (hint == HINT_DECREASING) {
            for (int i = a, j = b - 1; i < j; i++, j--)
                gs_swap(s, i, j);
            pivot = (b - 1) - (pivot - a);
            hint = HINT_INCREASING;
        }
        if (balanced && partitioned && hint == HINT_INCREASING && gs_partial_insertion(s, a, b))
            return;
        if (a > 0 && !gs_less(s, a - 1, pivot)) {
            a = gs_partition_equal(s, a, b, pivot);
            continue;
        }
        bool already;
        int mid = gs_partition(s, a, b, pivot, &already);
        partitioned = already;
        int left = mid - a, right = b - mid, threshold = length / 8;
        if (left < right) {
            balanced = left >= threshold;
            gs_pdqsort(s, a, mid, limit);
            a = mid + 1;
        } else {
            balanced = right >= threshold;
            gs_pdqsort(s, mid + 1, b, limit);
            b = mid;
        }
    }
}

void lcow_go_sort_slice(void *base, size_t n, size_t elem_size,
                        bool (*less)(const void *a, const void *b))
{
    gosort s = {base, elem_size, less};
    gs_pdqsort(&s, 0, (int)n, bit_len((unsigned)n));
}
