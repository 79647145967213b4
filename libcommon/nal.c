/*
 * nal.c - Annex B and length-prefixed NAL unit walkers.
 */
#include "nal.h"

#include <errno.h>

static bool start_code_at(const uint8_t *p, size_t len, size_t i)
{
    return i + 3 <= len && p[i] == 0 && p[i + 1] == 0 && p[i + 2] == 1;
}

bool cb_nal_is_annexb(const uint8_t *p, size_t len)
{
    return start_code_at(p, len, 0) || (len >= 4 && p[0] == 0 && start_code_at(p, len, 1));
}

bool cb_nal_next_annexb(const uint8_t *p, size_t len, size_t *pos, const uint8_t **nal,
                        size_t *nal_len)
{
    size_t i = *pos, start, end;

    while (i + 3 <= len && !start_code_at(p, len, i))
        i++;
    if (i + 3 > len)
        return false;
    start = end = i + 3;
    while (end + 3 <= len && !start_code_at(p, len, end))
        end++;
    if (end + 3 > len)
        end = len;
    *pos = end;
    /* a NAL unit ends with its stop bit: zeros are the next start code's */
    while (end > start && p[end - 1] == 0)
        end--;
    *nal = p + start;
    *nal_len = end - start;
    return true;
}

int cb_nal_next_prefixed(const uint8_t *p, size_t len, int len_size, size_t *pos,
                         const uint8_t **nal, size_t *nal_len)
{
    size_t l = 0;
    int i;

    if (*pos + (size_t) len_size > len)
        return 0;
    for (i = 0; i < len_size; i++)
        l = l << 8 | p[*pos + (size_t) i];
    *pos += (size_t) len_size;
    *nal_len = l;
    if (l == 0 || l > len - *pos)
        return -EINVAL;
    *nal = p + *pos;
    *pos += l;
    return 1;
}

size_t cb_nal_unescape(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i, o = 0, zeros = 0;

    for (i = 0; i < n && o < cap; i++) {
        if (zeros >= 2 && in[i] == 3) {
            zeros = 0;
            continue;
        }
        zeros = in[i] == 0 ? zeros + 1 : 0;
        out[o++] = in[i];
    }
    return o;
}
