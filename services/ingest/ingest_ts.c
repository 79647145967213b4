/*
 * ingest_ts.c - MPEG-TS for one source segment; see ingest_ts.h.
 *
 * DESIGN: a frame becomes one PES, described as a list of byte pieces (the
 * start codes, delimiter and parameter sets we add, and slices of the frame
 * itself). Knowing the PES size up front, the packets are written in one
 * pass: header, adaptation field (PCR, random access, stuffing in the last
 * packet), then payload copied from the pieces. The segment buffer grows by
 * doubling up to max_bytes and is handed to the caller at the end.
 *
 * PIDs: PMT 0x1000, video 0x100, audio 0x101 (as FFmpeg names them, which
 * makes the files easy to compare). PCR travels on the video PID, or on the
 * audio PID of an audio-only stream, 700 ms behind the DTS like FFmpeg's and
 * nginx-rtmp's muxers put it.
 */
#include "ingest_ts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bits.h"
#include "defs.h"
#include "nal.h"

#define TS_PACKET   188
#define PID_PAT     0x0000
#define PID_PMT     0x1000
#define PID_VIDEO   0x0100
#define PID_AUDIO   0x0101
#define PCR_DELAY   63000 /* 700 ms at 90 kHz */
#define MAX_PS      4096  /* bytes of parameter sets kept for keyframes */
#define ADTS_HEADER 7

typedef struct piece {
    const uint8_t *p;
    size_t len;
} piece_t;

typedef struct ts_track {
    ingest_codec_t codec;
    uint16_t pid;
    uint8_t stream_id; /* PES: 0xE0 video, 0xC0 audio */
    uint8_t cc;        /* continuity counter */
    /* video */
    int nal_len_size;   /* 1..4 for length-prefixed input, 0 unknown */
    uint8_t ps[MAX_PS]; /* parameter sets, Annex B */
    size_t ps_len;
    /* AAC */
    bool have_asc;
    uint8_t adts_profile, adts_sfi, adts_chan;
} ts_track_t;

struct ingest_ts {
    uint8_t *buf;
    size_t len, cap, max;
    ts_track_t t[2];
    uint16_t pcr_pid;
    piece_t *pieces;
    size_t npieces, cap_pieces;
};

static const uint8_t start_code[4] = { 0, 0, 0, 1 };
static const uint8_t aud_h264[2] = { 0x09, 0xF0 };
static const uint8_t aud_hevc[3] = { 0x46, 0x01, 0x50 };

/* ---- CRC-32/MPEG-2 for PSI sections ---- */

static uint32_t crc32_mpeg(const uint8_t *p, size_t len)
{
    static uint32_t table[256];
    static bool ready;
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;

    if (!ready) { /* idempotent: racing threads write the same values */
        for (uint32_t n = 0; n < 256; n++) {
            uint32_t c = n << 24;
            for (int k = 0; k < 8; k++)
                c = c & 0x80000000u ? (c << 1) ^ 0x04C11DB7u : c << 1;
            table[n] = c;
        }
        ready = true;
    }
    for (i = 0; i < len; i++)
        crc = (crc << 8) ^ table[((crc >> 24) ^ p[i]) & 0xFF];
    return crc;
}

/* ---- the buffer ---- */

static int reserve(ingest_ts_t *ts, size_t n)
{
    size_t cap;
    uint8_t *b;

    if (ts->len + n <= ts->cap)
        return 0;
    if (ts->len + n > ts->max)
        return -E2BIG;
    cap = ts->cap ? ts->cap : 65536;
    while (cap < ts->len + n)
        cap *= 2;
    cap = CB_MIN(cap, ts->max);
    b = realloc(ts->buf, cap);
    if (!b)
        return -ENOMEM;
    ts->buf = b;
    ts->cap = cap;
    return 0;
}

/* ---- configurations ---- */

static unsigned asc_aot(cb_bits_t *b)
{
    unsigned aot = cb_bits_read(b, 5);

    return aot == 31 ? 32 + cb_bits_read(b, 6) : aot;
}

static unsigned asc_sfi(cb_bits_t *b)
{
    static const unsigned rates[] = { 96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                      22050, 16000, 12000, 11025, 8000,  7350 };
    unsigned sfi = cb_bits_read(b, 4), rate, i, best = 4;

    if (sfi != 15)
        return sfi;
    rate = cb_bits_read(b, 24); /* an explicit rate: the nearest index ADTS can say */
    for (i = 0; i < CB_ARRAY_LEN(rates); i++) {
        unsigned d = rate > rates[i] ? rate - rates[i] : rates[i] - rate;
        unsigned db = rate > rates[best] ? rate - rates[best] : rates[best] - rate;
        if (d < db)
            best = i;
    }
    return best;
}

/* The ADTS fields from an AudioSpecificConfig (core layer for SBR/PS). */
static int parse_asc(ts_track_t *t, const uint8_t *p, size_t len)
{
    cb_bits_t b = { .p = p, .len = len };
    unsigned aot, sfi, chan;

    if (len < 2)
        return -EINVAL;
    aot = asc_aot(&b);
    sfi = asc_sfi(&b);
    chan = cb_bits_read(&b, 4);
    if (aot == 5 || aot == 29) { /* explicit HE-AAC: the core follows */
        asc_sfi(&b);
        aot = asc_aot(&b);
    }
    if (aot < 1 || aot > 4)
        aot = 2; /* ADTS carries AAC Main/LC/SSR/LTP only: LC decoders handle the rest */
    if (sfi > 12)
        return -EINVAL;
    t->adts_profile = (uint8_t) (aot - 1);
    t->adts_sfi = (uint8_t) sfi;
    t->adts_chan = (uint8_t) (chan & 7);
    t->have_asc = true;
    return 0;
}

static int ps_add(ts_track_t *t, const uint8_t *nal, size_t len)
{
    if (t->ps_len + 4 + len > sizeof(t->ps))
        return -E2BIG;
    memcpy(t->ps + t->ps_len, start_code, 4);
    memcpy(t->ps + t->ps_len + 4, nal, len);
    t->ps_len += 4 + len;
    return 0;
}

/* avcC: version, profile, compat, level, 0xFC|len-1, 0xE0|nsps, (len sps)*, npps, (len pps)* */
static int parse_avcc(ts_track_t *t, const uint8_t *p, size_t len)
{
    size_t pos = 6;
    unsigned n, i, k;

    if (len < 7 || p[0] != 1)
        return -EINVAL;
    t->nal_len_size = (p[4] & 3) + 1;
    for (k = 0; k < 2; k++) {
        if (pos >= len)
            return -EINVAL;
        n = k == 0 ? p[5] & 0x1F : p[pos++];
        if (k == 0)
            pos = 6;
        for (i = 0; i < n; i++) {
            size_t l;
            if (pos + 2 > len)
                return -EINVAL;
            l = (size_t) p[pos] << 8 | p[pos + 1];
            if (pos + 2 + l > len || ps_add(t, p + pos + 2, l))
                return -EINVAL;
            pos += 2 + l;
        }
    }
    return 0;
}

/*
 * hvcC: 22 bytes, then arrays of (type, count, (len nal)*). Only VPS, SPS
 * and PPS are kept: encoders also put SEI there (x265: its whole option
 * string), which decoders do not need again on every keyframe.
 */
static int parse_hvcc(ts_track_t *t, const uint8_t *p, size_t len)
{
    size_t pos = 23;
    unsigned arrays, a, n, i, type;

    if (len < 23 || p[0] != 1)
        return -EINVAL;
    t->nal_len_size = (p[21] & 3) + 1;
    arrays = p[22];
    for (a = 0; a < arrays; a++) {
        if (pos + 3 > len)
            return -EINVAL;
        type = p[pos] & 0x3F;
        n = (unsigned) p[pos + 1] << 8 | p[pos + 2];
        pos += 3;
        for (i = 0; i < n; i++) {
            size_t l;
            if (pos + 2 > len)
                return -EINVAL;
            l = (size_t) p[pos] << 8 | p[pos + 1];
            if (pos + 2 + l > len)
                return -EINVAL;
            if (type >= 32 && type <= 34 && ps_add(t, p + pos + 2, l))
                return -EINVAL;
            pos += 2 + l;
        }
    }
    return 0;
}

static int setup_track(ts_track_t *t, ingest_media_kind_t kind, const ingest_ts_track_t *in,
                       char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    t->codec = in ? in->codec : INGEST_CODEC_NONE;
    if (t->codec == INGEST_CODEC_NONE)
        return 0;
    t->pid = kind == INGEST_VIDEO ? PID_VIDEO : PID_AUDIO;
    t->stream_id = kind == INGEST_VIDEO ? 0xE0 : 0xC0;
    switch (t->codec) {
    case INGEST_CODEC_H264:
    case INGEST_CODEC_HEVC:
        if (in->extradata_len == 0)
            return 0; /* in-band parameter sets (Annex B) */
        if (cb_nal_is_annexb(in->extradata, in->extradata_len)) {
            if (in->extradata_len > sizeof(t->ps)) {
                snprintf(err, errlen, "video parameter sets over %d bytes", MAX_PS);
                return -EINVAL;
            }
            memcpy(t->ps, in->extradata, in->extradata_len);
            t->ps_len = in->extradata_len;
            return 0;
        }
        if ((t->codec == INGEST_CODEC_H264 ? parse_avcc : parse_hvcc)(t, in->extradata,
                                                                      in->extradata_len)) {
            snprintf(err, errlen, "malformed %s decoder configuration",
                     t->codec == INGEST_CODEC_H264 ? "AVC" : "HEVC");
            return -EINVAL;
        }
        return 0;
    case INGEST_CODEC_AAC:
        if (in->extradata_len && parse_asc(t, in->extradata, in->extradata_len)) {
            snprintf(err, errlen, "malformed AudioSpecificConfig");
            return -EINVAL;
        }
        return 0;
    case INGEST_CODEC_MP3:
        return 0;
    default:
        snprintf(err, errlen, "%s cannot go into MPEG-TS", ingest_codec_name(t->codec));
        return -EINVAL;
    }
}

/* ---- packets ---- */

static uint8_t stream_type(ingest_codec_t c)
{
    switch (c) {
    case INGEST_CODEC_H264:
        return 0x1B;
    case INGEST_CODEC_HEVC:
        return 0x24;
    case INGEST_CODEC_AAC:
        return 0x0F;
    case INGEST_CODEC_MP3:
        return 0x03;
    default:
        return 0;
    }
}

/* One PSI section (PAT or PMT) in one packet. */
static void write_psi(ingest_ts_t *ts, uint16_t pid, const uint8_t *section, size_t len)
{
    uint8_t *p = ts->buf + ts->len;
    uint32_t crc = crc32_mpeg(section, len);

    p[0] = 0x47;
    p[1] = (uint8_t) (0x40 | (pid >> 8)); /* payload unit start */
    p[2] = (uint8_t) pid;
    p[3] = 0x10; /* payload only, cc 0 */
    p[4] = 0;    /* pointer field */
    memcpy(p + 5, section, len);
    p[5 + len] = (uint8_t) (crc >> 24);
    p[6 + len] = (uint8_t) (crc >> 16);
    p[7 + len] = (uint8_t) (crc >> 8);
    p[8 + len] = (uint8_t) crc;
    memset(p + 9 + len, 0xFF, TS_PACKET - 9 - len);
    ts->len += TS_PACKET;
}

static void write_tables(ingest_ts_t *ts)
{
    uint8_t pat[] = { 0x00,
                      0xB0,
                      13,
                      0x00,
                      0x01,
                      0xC1,
                      0x00,
                      0x00,
                      0x00,
                      0x01,
                      (uint8_t) (0xE0 | (PID_PMT >> 8)),
                      (uint8_t) PID_PMT };
    uint8_t pmt[64];
    size_t n = 0;
    int i;

    write_psi(ts, PID_PAT, pat, sizeof(pat));
    pmt[n++] = 0x02; /* table id */
    n += 2;          /* section length, below */
    pmt[n++] = 0x00;
    pmt[n++] = 0x01; /* program 1 */
    pmt[n++] = 0xC1;
    pmt[n++] = 0x00;
    pmt[n++] = 0x00;
    pmt[n++] = (uint8_t) (0xE0 | (ts->pcr_pid >> 8));
    pmt[n++] = (uint8_t) ts->pcr_pid;
    pmt[n++] = 0xF0;
    pmt[n++] = 0x00; /* no program info */
    for (i = 0; i < 2; i++) {
        const ts_track_t *t = &ts->t[i];
        if (t->codec == INGEST_CODEC_NONE)
            continue;
        pmt[n++] = stream_type(t->codec);
        pmt[n++] = (uint8_t) (0xE0 | (t->pid >> 8));
        pmt[n++] = (uint8_t) t->pid;
        pmt[n++] = 0xF0;
        pmt[n++] = 0x00;
    }
    pmt[1] = (uint8_t) (0xB0 | ((n + 4 - 3) >> 8));
    pmt[2] = (uint8_t) (n + 4 - 3); /* from after the length to the end of the CRC */
    write_psi(ts, PID_PMT, pmt, n);
}

static void put_ts(uint8_t *p, uint8_t marker, int64_t v)
{
    v &= 0x1FFFFFFFFLL;
    p[0] = (uint8_t) (marker << 4 | ((v >> 29) & 0x0E) | 1);
    p[1] = (uint8_t) (v >> 22);
    p[2] = (uint8_t) (((v >> 14) & 0xFE) | 1);
    p[3] = (uint8_t) (v >> 7);
    p[4] = (uint8_t) (((v << 1) & 0xFE) | 1);
}

static int add_piece(ingest_ts_t *ts, const uint8_t *p, size_t len)
{
    if (len == 0)
        return 0;
    if (ts->npieces == ts->cap_pieces) {
        size_t cap = ts->cap_pieces ? ts->cap_pieces * 2 : 64;
        piece_t *n = realloc(ts->pieces, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        ts->pieces = n;
        ts->cap_pieces = cap;
    }
    ts->pieces[ts->npieces].p = p;
    ts->pieces[ts->npieces].len = len;
    ts->npieces++;
    return 0;
}

/* Write a PES of header + pieces as TS packets. */
static int write_pes(ingest_ts_t *ts, ts_track_t *t, bool keyframe, int64_t dts, int64_t pts)
{
    uint8_t hdr[19];
    size_t hlen, payload = 0, left, i, piece = 0, off = 0, npk;
    bool first = true, with_dts = dts != pts, pcr = t->pid == ts->pcr_pid;
    int rc;

    for (i = 0; i < ts->npieces; i++)
        payload += ts->pieces[i].len;
    hdr[0] = 0;
    hdr[1] = 0;
    hdr[2] = 1;
    hdr[3] = t->stream_id;
    hlen = with_dts ? 19 : 14;
    {
        size_t pes_len = payload + hlen - 6;
        /* video may exceed 16 bits: 0 means unbounded */
        if (pes_len > 0xFFFF)
            pes_len = 0;
        hdr[4] = (uint8_t) (pes_len >> 8);
        hdr[5] = (uint8_t) pes_len;
    }
    hdr[6] = 0x80;
    hdr[7] = with_dts ? 0xC0 : 0x80;
    hdr[8] = (uint8_t) (hlen - 9);
    put_ts(hdr + 9, with_dts ? 3 : 2, pts);
    if (with_dts)
        put_ts(hdr + 14, 1, dts);
    left = hlen + payload;
    /* packets needed, counting the first packet's PCR/RAI field (8 bytes) */
    npk = (left + (pcr || keyframe ? 8 : 0) + 183) / 184;
    rc = reserve(ts, npk * TS_PACKET + TS_PACKET);
    if (rc)
        return rc;
    while (left > 0) {
        uint8_t *p = ts->buf + ts->len;
        size_t af = 0, room, n;

        p[0] = 0x47;
        p[1] = (uint8_t) ((first ? 0x40 : 0) | (t->pid >> 8));
        p[2] = (uint8_t) t->pid;
        if (first && (pcr || keyframe)) {
            /* adaptation field: flags, and the PCR on the PCR track */
            p[4] = 1;
            p[5] = keyframe ? 0x40 : 0;
            af = 2;
            if (pcr) {
                int64_t base = CB_MAX(dts - PCR_DELAY, 0) & 0x1FFFFFFFFLL;
                p[5] |= 0x10;
                p[6] = (uint8_t) (base >> 25);
                p[7] = (uint8_t) (base >> 17);
                p[8] = (uint8_t) (base >> 9);
                p[9] = (uint8_t) (base >> 1);
                p[10] = (uint8_t) (((base & 1) << 7) | 0x7E);
                p[11] = 0;
                af += 6;
                p[4] = 7;
            }
        }
        room = 184 - af;
        if (left < room) { /* the last packet: stuff the adaptation field */
            size_t stuff = room - left;
            if (af == 0) {
                p[4] = (uint8_t) (stuff - 1);
                if (stuff > 1) {
                    p[5] = 0;
                    memset(p + 6, 0xFF, stuff - 2);
                }
                af = stuff;
            } else {
                memset(p + 4 + af, 0xFF, stuff);
                p[4] = (uint8_t) (p[4] + stuff);
                af += stuff;
            }
            room = left;
        }
        p[3] = (uint8_t) ((af ? 0x30 : 0x10) | (t->cc & 0x0F));
        t->cc++;
        p += 4 + af;
        n = room;
        /* the PES header first, then the pieces */
        if (first) {
            memcpy(p, hdr, hlen);
            p += hlen;
            n -= hlen;
            left -= hlen;
        }
        while (n > 0) {
            size_t take = CB_MIN(n, ts->pieces[piece].len - off);
            memcpy(p, ts->pieces[piece].p + off, take);
            p += take;
            n -= take;
            left -= take;
            off += take;
            if (off == ts->pieces[piece].len) {
                piece++;
                off = 0;
            }
        }
        ts->len += TS_PACKET;
        first = false;
    }
    return 0;
}

/* ---- frames ---- */

static int nal_type(ingest_codec_t c, uint8_t b)
{
    return c == INGEST_CODEC_H264 ? b & 0x1F : (b >> 1) & 0x3F;
}

static bool is_aud(ingest_codec_t c, int type)
{
    return c == INGEST_CODEC_H264 ? type == 9 : type == 35;
}

static bool is_ps(ingest_codec_t c, int type)
{
    return c == INGEST_CODEC_H264 ? type == 7 : type >= 32 && type <= 34;
}

/* Pieces of a video frame: AUD, parameter sets on keyframes, the NALs in Annex B. */
static int video_pieces(ingest_ts_t *ts, ts_track_t *t, bool keyframe, const uint8_t *data,
                        size_t len, char *err, size_t errlen)
{
    /* a configuration record says length-prefixed (a 4-byte length of 256..511 reads
     * like a start code, so never guess); without one, start codes are required */
    bool annexb = t->nal_len_size == 0, has_ps = false, first = true;
    const uint8_t *nal;
    size_t pos = 0, n;
    int first_type = -1, rc = 0, more;

    if (annexb && !cb_nal_is_annexb(data, len)) {
        snprintf(err, errlen, "video frame without start codes or a decoder configuration");
        return -EINVAL;
    }
    /* look at the NAL types: is there a delimiter first, are the parameter sets in? */
    if (annexb) {
        while ((first || (keyframe && !has_ps)) && cb_nal_next_annexb(data, len, &pos, &nal, &n)) {
            if (first)
                first_type = n ? nal_type(t->codec, nal[0]) : -1;
            first = false;
            if (keyframe && n && is_ps(t->codec, nal_type(t->codec, nal[0])))
                has_ps = true;
        }
    } else {
        while ((more = cb_nal_next_prefixed(data, len, t->nal_len_size, &pos, &nal, &n)) > 0) {
            if (first_type < 0)
                first_type = nal_type(t->codec, nal[0]);
            if (is_ps(t->codec, nal_type(t->codec, nal[0])))
                has_ps = true;
        }
        if (more < 0) {
            snprintf(err, errlen, "video frame: NAL unit length %zu past the frame", n);
            return -EINVAL;
        }
    }
    if (first_type < 0 || !is_aud(t->codec, first_type)) {
        rc |= add_piece(ts, start_code, 4);
        rc |= t->codec == INGEST_CODEC_H264 ? add_piece(ts, aud_h264, sizeof(aud_h264))
                                            : add_piece(ts, aud_hevc, sizeof(aud_hevc));
    }
    if (keyframe && !has_ps)
        rc |= add_piece(ts, t->ps, t->ps_len);
    if (annexb) {
        rc |= add_piece(ts, data, len);
    } else {
        for (pos = 0; cb_nal_next_prefixed(data, len, t->nal_len_size, &pos, &nal, &n) > 0;) {
            rc |= add_piece(ts, start_code, 4);
            rc |= add_piece(ts, nal, n);
        }
    }
    return rc ? -ENOMEM : 0;
}

int ingest_ts_write(ingest_ts_t *ts, ingest_media_kind_t kind, bool keyframe, int64_t dts_90k,
                    int64_t pts_90k, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    ts_track_t *t = &ts->t[kind];
    uint8_t adts[ADTS_HEADER];
    int rc;

    if (t->codec == INGEST_CODEC_NONE) {
        snprintf(err, errlen, "no %s track in this segment",
                 kind == INGEST_VIDEO ? "video" : "audio");
        return -EINVAL;
    }
    if (len == 0)
        return 0;
    ts->npieces = 0;
    switch (t->codec) {
    case INGEST_CODEC_H264:
    case INGEST_CODEC_HEVC:
        rc = video_pieces(ts, t, keyframe, data, len, err, errlen);
        if (rc)
            return rc;
        break;
    case INGEST_CODEC_AAC:
        if (len >= 2 && data[0] == 0xFF && (data[1] & 0xF6) == 0xF0) {
            rc = add_piece(ts, data, len); /* ADTS already */
        } else {
            size_t flen = len + ADTS_HEADER;
            if (!t->have_asc) {
                snprintf(err, errlen, "raw AAC frame without an AudioSpecificConfig");
                return -EINVAL;
            }
            if (flen > 0x1FFF) {
                snprintf(err, errlen, "AAC frame of %zu bytes is too large for ADTS", len);
                return -EINVAL;
            }
            adts[0] = 0xFF;
            adts[1] = 0xF1;
            adts[2] = (uint8_t) (t->adts_profile << 6 | t->adts_sfi << 2 | t->adts_chan >> 2);
            adts[3] = (uint8_t) ((t->adts_chan & 3) << 6 | (flen >> 11));
            adts[4] = (uint8_t) (flen >> 3);
            adts[5] = (uint8_t) ((flen & 7) << 5 | 0x1F);
            adts[6] = 0xFC;
            rc = add_piece(ts, adts, sizeof(adts));
            rc |= add_piece(ts, data, len);
        }
        if (rc)
            return -ENOMEM;
        break;
    default:
        if (add_piece(ts, data, len))
            return -ENOMEM;
        break;
    }
    rc = write_pes(ts, t, kind == INGEST_VIDEO && keyframe, dts_90k, CB_MAX(pts_90k, dts_90k));
    if (rc == -E2BIG)
        snprintf(err, errlen, "segment over %zu bytes", ts->max);
    return rc;
}

int ingest_ts_new(const ingest_ts_track_t *video, const ingest_ts_track_t *audio, size_t size_hint,
                  size_t max_bytes, ingest_ts_t **out, char *err, size_t errlen)
{
    ingest_ts_t *ts = calloc(1, sizeof(*ts));
    int rc;

    if (!ts)
        return -ENOMEM;
    rc = setup_track(&ts->t[INGEST_VIDEO], INGEST_VIDEO, video, err, errlen);
    if (rc == 0)
        rc = setup_track(&ts->t[INGEST_AUDIO], INGEST_AUDIO, audio, err, errlen);
    if (rc == 0 && ts->t[0].codec == INGEST_CODEC_NONE && ts->t[1].codec == INGEST_CODEC_NONE) {
        snprintf(err, errlen, "a segment needs a video or an audio track");
        rc = -EINVAL;
    }
    if (rc) {
        free(ts);
        return rc;
    }
    ts->max = CB_MAX(max_bytes, (size_t) 4 * TS_PACKET);
    ts->pcr_pid = ts->t[INGEST_VIDEO].codec != INGEST_CODEC_NONE ? PID_VIDEO : PID_AUDIO;
    /* one allocation for a typical segment: the previous size and a margin */
    rc = reserve(ts, CB_MIN(size_hint + size_hint / 8 + 4 * TS_PACKET, ts->max));
    if (rc) {
        ingest_ts_free(ts);
        return rc;
    }
    write_tables(ts);
    *out = ts;
    return 0;
}

uint8_t *ingest_ts_finish(ingest_ts_t *ts, size_t *len)
{
    uint8_t *buf = ts->buf;

    *len = ts->len;
    ts->buf = NULL;
    ingest_ts_free(ts);
    return buf;
}

void ingest_ts_free(ingest_ts_t *ts)
{
    if (!ts)
        return;
    free(ts->buf);
    free(ts->pieces);
    free(ts);
}
