/*
 * ingest_flv.c - FLV/E-RTMP tag bodies and codec configuration; see ingest_flv.h.
 */
#include "ingest_flv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bits.h"
#include "defs.h"
#include "nal.h"

#define FOURCC(a, b, c, d)                                                                         \
    (((uint32_t) (a) << 24) | ((uint32_t) (b) << 16) | ((uint32_t) (c) << 8) | (uint32_t) (d))

/* Enhanced RTMP packet types (video) */
enum { EX_SEQUENCE_START = 0, EX_CODED_FRAMES = 1, EX_SEQUENCE_END = 2, EX_CODED_FRAMES_X = 3 };

const char *ingest_codec_name(ingest_codec_t c)
{
    static const char *const names[] = { "", "h264", "hevc", "av1", "aac", "mp3" };

    return (unsigned) c < CB_ARRAY_LEN(names) ? names[c] : "";
}

static int32_t si24(const uint8_t *p)
{
    int32_t v = (int32_t) ((uint32_t) p[0] << 16 | (uint32_t) p[1] << 8 | p[2]);

    return v & 0x800000 ? v - 0x1000000 : v;
}

int ingest_flv_parse_video(const uint8_t *p, size_t len, ingest_media_t *out, char *err,
                           size_t errlen)
{
    int frame_type;

    memset(out, 0, sizeof(*out));
    out->kind = INGEST_VIDEO;
    if (len < 1) {
        snprintf(err, errlen, "empty video message");
        return -EINVAL;
    }
    if (p[0] & 0x80) {
        /* Enhanced RTMP: [1 ex][3 frame type][4 packet type][FourCC] */
        int ptype = p[0] & 0x0F;
        uint32_t fourcc;
        size_t off = 5;

        frame_type = (p[0] >> 4) & 0x07;
        if (len < 5) {
            snprintf(err, errlen, "short enhanced video header");
            return -EINVAL;
        }
        fourcc = FOURCC(p[1], p[2], p[3], p[4]);
        if (fourcc == FOURCC('a', 'v', 'c', '1'))
            out->codec = INGEST_CODEC_H264;
        else if (fourcc == FOURCC('h', 'v', 'c', '1'))
            out->codec = INGEST_CODEC_HEVC;
        else if (fourcc == FOURCC('a', 'v', '0', '1'))
            out->codec = INGEST_CODEC_AV1;
        else {
            snprintf(err, errlen, "video codec '%c%c%c%c' is not supported (h264, hevc, av1 are)",
                     p[1] >= 32 && p[1] < 127 ? p[1] : '?', p[2] >= 32 && p[2] < 127 ? p[2] : '?',
                     p[3] >= 32 && p[3] < 127 ? p[3] : '?', p[4] >= 32 && p[4] < 127 ? p[4] : '?');
            return -ENOTSUP;
        }
        if (frame_type == 5) { /* command frame */
            out->skip = true;
            return 0;
        }
        switch (ptype) {
        case EX_SEQUENCE_START:
            out->config = true;
            break;
        case EX_SEQUENCE_END:
            out->end_of_sequence = true;
            break;
        case EX_CODED_FRAMES:
            /* avc1 and hvc1 carry a composition time offset here; av01 does not */
            if (out->codec != INGEST_CODEC_AV1) {
                if (len < 8) {
                    snprintf(err, errlen, "short enhanced video frame");
                    return -EINVAL;
                }
                out->cts_ms = si24(p + 5);
                off = 8;
            }
            break;
        case EX_CODED_FRAMES_X:
            break;
        default: /* metadata, MPEG-2 TS sequence start, multitrack */
            out->skip = true;
            return 0;
        }
        out->keyframe = frame_type == 1 || frame_type == 4;
        out->data = p + off;
        out->len = len - off;
        return 0;
    }
    frame_type = p[0] >> 4;
    switch (p[0] & 0x0F) {
    case 7:
        out->codec = INGEST_CODEC_H264;
        break;
    case 12: /* HEVC in the unofficial legacy id some encoders use */
        out->codec = INGEST_CODEC_HEVC;
        break;
    default:
        snprintf(err, errlen, "video codec id %d is not supported (h264, hevc, av1 are)",
                 p[0] & 0x0F);
        return -ENOTSUP;
    }
    if (frame_type == 5) {
        out->skip = true;
        return 0;
    }
    if (len < 5) {
        snprintf(err, errlen, "short video message");
        return -EINVAL;
    }
    out->config = p[1] == 0;
    out->end_of_sequence = p[1] == 2;
    out->cts_ms = si24(p + 2);
    out->keyframe = frame_type == 1 || frame_type == 4;
    out->data = p + 5;
    out->len = len - 5;
    return 0;
}

int ingest_flv_parse_audio(const uint8_t *p, size_t len, ingest_media_t *out, char *err,
                           size_t errlen)
{
    int format;

    memset(out, 0, sizeof(*out));
    out->kind = INGEST_AUDIO;
    if (len < 1) {
        snprintf(err, errlen, "empty audio message");
        return -EINVAL;
    }
    format = p[0] >> 4;
    if (format == 9) {
        /* Enhanced RTMP audio: [4 format=9][4 packet type][FourCC] */
        int ptype = p[0] & 0x0F;

        if (len < 5) {
            snprintf(err, errlen, "short enhanced audio header");
            return -EINVAL;
        }
        if (FOURCC(p[1], p[2], p[3], p[4]) == FOURCC('m', 'p', '4', 'a'))
            out->codec = INGEST_CODEC_AAC;
        else if (FOURCC(p[1], p[2], p[3], p[4]) == FOURCC('.', 'm', 'p', '3'))
            out->codec = INGEST_CODEC_MP3;
        else {
            snprintf(err, errlen, "audio codec '%c%c%c%c' is not supported (aac, mp3 are)",
                     p[1] >= 32 && p[1] < 127 ? p[1] : '?', p[2] >= 32 && p[2] < 127 ? p[2] : '?',
                     p[3] >= 32 && p[3] < 127 ? p[3] : '?', p[4] >= 32 && p[4] < 127 ? p[4] : '?');
            return -ENOTSUP;
        }
        if (ptype == 0)
            out->config = true;
        else if (ptype == 2)
            out->end_of_sequence = true;
        else if (ptype != 1) {
            out->skip = true; /* multichannel config, multitrack */
            return 0;
        }
        out->data = p + 5;
        out->len = len - 5;
        return 0;
    }
    switch (format) {
    case 10:
        if (len < 2) {
            snprintf(err, errlen, "short AAC message");
            return -EINVAL;
        }
        out->codec = INGEST_CODEC_AAC;
        out->config = p[1] == 0;
        out->data = p + 2;
        out->len = len - 2;
        return 0;
    case 2:
        out->codec = INGEST_CODEC_MP3;
        out->data = p + 1;
        out->len = len - 1;
        return 0;
    default:
        snprintf(err, errlen, "audio format %d is not supported (aac, mp3 are)", format);
        return -ENOTSUP;
    }
}

int ingest_flv_file_next(const uint8_t *buf, size_t len, size_t *pos, ingest_flv_tag_t *tag)
{
    size_t p = *pos, size;

    if (p == 0) {
        uint32_t hdr;
        if (len < 13 || memcmp(buf, "FLV", 3) != 0)
            return -EINVAL;
        hdr = (uint32_t) buf[5] << 24 | (uint32_t) buf[6] << 16 | (uint32_t) buf[7] << 8 | buf[8];
        if (hdr < 9 || hdr > len - 4)
            return -EINVAL;
        p = hdr + 4; /* header, then PreviousTagSize0 */
    }
    if (p == len)
        return 0;
    if (len - p < 11)
        return -EINVAL;
    size = (size_t) buf[p + 1] << 16 | (size_t) buf[p + 2] << 8 | buf[p + 3];
    if (len - p - 11 < size)
        return -EINVAL;
    tag->type = buf[p] & 0x1F;
    tag->timestamp_ms = (uint32_t) buf[p + 7] << 24 | (uint32_t) buf[p + 4] << 16 |
                        (uint32_t) buf[p + 5] << 8 | buf[p + 6];
    tag->data = buf + p + 11;
    tag->len = size;
    p += 11 + size;
    p += CB_MIN(len - p, (size_t) 4); /* PreviousTagSize */
    *pos = p;
    return 1;
}

/* ---- H.264 SPS, enough for the picture size ---- */

static void skip_scaling_list(cb_bits_t *b, int size)
{
    int last = 8, next = 8, j;

    for (j = 0; j < size && !b->overrun; j++) {
        if (next != 0)
            next = (int) (((int64_t) last + cb_bits_se(b) + 256) % 256 + 256) % 256;
        last = next == 0 ? last : next;
    }
}

static int sps_dimensions(const uint8_t *nal, size_t n, int *width, int *height)
{
    uint8_t rbsp[256];
    cb_bits_t b = { .p = rbsp };
    unsigned profile, chroma = 1, frame_mbs_only, w_mbs, h_map, poc_type, i;
    unsigned crop_l = 0, crop_r = 0, crop_t = 0, crop_b = 0;

    if (n < 4 || (nal[0] & 0x1F) != 7)
        return -EINVAL;
    b.len = cb_nal_unescape(nal + 1, n - 1, rbsp, sizeof(rbsp));
    profile = cb_bits_read(&b, 8);
    cb_bits_read(&b, 16); /* constraint flags, level */
    cb_bits_ue(&b);       /* sps id */
    if (profile == 100 || profile == 110 || profile == 122 || profile == 244 || profile == 44 ||
        profile == 83 || profile == 86 || profile == 118 || profile == 128 || profile == 138 ||
        profile == 139 || profile == 134 || profile == 135) {
        chroma = cb_bits_ue(&b);
        if (chroma == 3)
            cb_bits_read(&b, 1);
        cb_bits_ue(&b); /* bit depth luma */
        cb_bits_ue(&b); /* bit depth chroma */
        cb_bits_read(&b, 1);
        if (cb_bits_read(&b, 1)) { /* seq_scaling_matrix_present */
            for (i = 0; i < (chroma == 3 ? 12u : 8u); i++) {
                if (cb_bits_read(&b, 1))
                    skip_scaling_list(&b, i < 6 ? 16 : 64);
            }
        }
    }
    cb_bits_ue(&b); /* log2_max_frame_num */
    poc_type = cb_bits_ue(&b);
    if (poc_type == 0) {
        cb_bits_ue(&b);
    } else if (poc_type == 1) {
        unsigned cycle;
        cb_bits_read(&b, 1);
        cb_bits_se(&b);
        cb_bits_se(&b);
        cycle = cb_bits_ue(&b);
        for (i = 0; i < cycle && i < 256 && !b.overrun; i++)
            cb_bits_se(&b);
    }
    cb_bits_ue(&b); /* max_num_ref_frames */
    cb_bits_read(&b, 1);
    w_mbs = cb_bits_ue(&b) + 1;
    h_map = cb_bits_ue(&b) + 1;
    frame_mbs_only = cb_bits_read(&b, 1);
    if (!frame_mbs_only)
        cb_bits_read(&b, 1);
    cb_bits_read(&b, 1);
    if (cb_bits_read(&b, 1)) { /* frame_cropping */
        crop_l = cb_bits_ue(&b);
        crop_r = cb_bits_ue(&b);
        crop_t = cb_bits_ue(&b);
        crop_b = cb_bits_ue(&b);
    }
    if (b.overrun || w_mbs > 1024 || h_map > 1024)
        return -EINVAL;
    {
        unsigned sub_w = chroma == 1 || chroma == 2 ? 2 : 1;
        unsigned sub_h = (chroma == 1 ? 2 : 1) * (2 - frame_mbs_only);
        long w = (long) w_mbs * 16 - (long) (crop_l + crop_r) * sub_w;
        long h = (long) h_map * 16 * (2 - frame_mbs_only) - (long) (crop_t + crop_b) * sub_h;
        if (w <= 0 || h <= 0)
            return -EINVAL;
        *width = (int) w;
        *height = (int) h;
    }
    return 0;
}

int ingest_avcc_dimensions(const uint8_t *avcc, size_t len, int *width, int *height)
{
    size_t sps_len;

    /* version, profile, compat, level, lengthSizeMinusOne, numSPS, spsLength */
    if (len < 8 || avcc[0] != 1 || (avcc[5] & 0x1F) == 0)
        return -EINVAL;
    sps_len = (size_t) avcc[6] << 8 | avcc[7];
    if (sps_len > len - 8)
        return -EINVAL;
    return sps_dimensions(avcc + 8, sps_len, width, height);
}

int ingest_asc_parse(const uint8_t *asc, size_t len, int *sample_rate, int *channels)
{
    static const int rates[] = { 96000, 88200, 64000, 48000, 44100, 32000, 24000,
                                 22050, 16000, 12000, 11025, 8000,  7350 };
    cb_bits_t b = { .p = asc, .len = len };
    unsigned aot, idx, ch;

    aot = cb_bits_read(&b, 5);
    if (aot == 31)
        aot = 32 + cb_bits_read(&b, 6);
    idx = cb_bits_read(&b, 4);
    if (idx == 15) {
        *sample_rate = (int) cb_bits_read(&b, 24);
    } else if (idx < CB_ARRAY_LEN(rates)) {
        *sample_rate = rates[idx];
    } else {
        return -EINVAL;
    }
    ch = cb_bits_read(&b, 4);
    if (b.overrun || aot == 0 || *sample_rate <= 0)
        return -EINVAL;
    *channels = ch == 7 ? 8 : (int) ch;
    return 0;
}
