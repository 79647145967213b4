/*
 * bits.c - MSB-first bit reader with Exp-Golomb codes.
 */
#include "bits.h"

uint32_t cb_bits_read(cb_bits_t *b, int n)
{
    uint32_t v = 0;

    while (n-- > 0) {
        uint32_t bit = 0;

        if (b->pos < b->len * 8)
            bit = (b->p[b->pos / 8] >> (7 - b->pos % 8)) & 1;
        else
            b->overrun = true;
        b->pos++;
        v = v << 1 | bit;
    }
    return v;
}

uint32_t cb_bits_ue(cb_bits_t *b)
{
    int zeros = 0;

    while (cb_bits_read(b, 1) == 0 && !b->overrun && zeros < 32)
        zeros++;
    if (zeros >= 32) { /* no Exp-Golomb code in a valid parameter set is that long */
        b->overrun = true;
        return 0;
    }
    return zeros ? (1u << zeros) - 1 + cb_bits_read(b, zeros) : 0;
}

int32_t cb_bits_se(cb_bits_t *b)
{
    uint32_t v = cb_bits_ue(b);

    /* in 64 bits: a ue of 2^32-1 maps outside int32 */
    return (int32_t) (v & 1 ? ((int64_t) v + 1) / 2 : -((int64_t) v / 2));
}
