/*
 * nal.h - walking the NAL units of an H.264/HEVC access unit, in either of
 * its two framings: Annex B start codes (MPEG-TS, SRT, encoders' output)
 * or big-endian length prefixes (RTMP, MP4; the size comes from the avcC
 * or hvcC).
 *
 * Pure functions over borrowed bytes; any thread. Lengths read from input
 * are checked against the buffer, so the walkers are safe on hostile data.
 */
#ifndef CB_NAL_H
#define CB_NAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Does p begin with a start code (00 00 01 or 00 00 00 01)? */
bool cb_nal_is_annexb(const uint8_t *p, size_t len);

/*
 * The next Annex B NAL unit at or after *pos: sets nal and nal_len (the
 * unit without its start code and without the zero bytes that belong to
 * the next start code) and moves *pos past it. false when there is none.
 */
bool cb_nal_next_annexb(const uint8_t *p, size_t len, size_t *pos, const uint8_t **nal,
                        size_t *nal_len);

/*
 * The next length-prefixed NAL unit at *pos (len_size: 1..4 bytes of
 * length). Returns 1 and moves *pos past it, 0 when fewer than len_size
 * bytes are left, or -EINVAL for a length of 0 or past the end (nal_len
 * is then the length read, and *pos points just after the length field).
 */
int cb_nal_next_prefixed(const uint8_t *p, size_t len, int len_size, size_t *pos,
                         const uint8_t **nal, size_t *nal_len);

/*
 * Copy a NAL unit's payload into out without its emulation prevention bytes
 * (the 03 of 00 00 03), giving the RBSP its syntax is read from. Copies at
 * most cap bytes; returns how many it wrote.
 */
size_t cb_nal_unescape(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

#endif /* CB_NAL_H */
