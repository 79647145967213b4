/*
 * bits.h - reading a bitstream MSB first: fixed-width fields and the
 * Exp-Golomb codes of H.264/HEVC parameter sets, for the parsers of
 * decoder configurations (SPS, AudioSpecificConfig, AV1 sequence headers).
 *
 * Reading past the end yields zero bits and sets overrun, so a parser reads
 * straight through and checks overrun once at the end. Pure; any thread.
 */
#ifndef CB_BITS_H
#define CB_BITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cb_bits {
    const uint8_t *p;
    size_t len;   /* bytes */
    size_t pos;   /* bits read */
    bool overrun; /* a read went past the end */
} cb_bits_t;

/* The next n bits (0..32) as an unsigned number. */
uint32_t cb_bits_read(cb_bits_t *b, int n);

/* An unsigned Exp-Golomb code, ue(v); one of 32 or more leading zeros sets overrun. */
uint32_t cb_bits_ue(cb_bits_t *b);

/* A signed Exp-Golomb code, se(v). */
int32_t cb_bits_se(cb_bits_t *b);

#endif /* CB_BITS_H */
