/*
 * transcode_cmaf.c - ISO BMFF boxes for CMAF init and media segments.
 *
 * DESIGN: boxes are appended to a cb_buf; a box's size is patched in when
 * it is closed (box_open returns where the size goes). Appends only fail
 * when the buffer's maximum is reached; the first failure is remembered in
 * the writer and returned at the end, so the box code reads straight.
 */
#include "transcode_cmaf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bits.h"
#include "defs.h"
#include "nal.h"

typedef struct w {
    cb_buf_t *b;
    int err;
} w_t;

static void put(w_t *w, const void *p, size_t n)
{
    if (w->err == 0)
        w->err = cb_buf_append(w->b, p, n);
}

static void u8(w_t *w, uint8_t v)
{
    put(w, &v, 1);
}

static void u16(w_t *w, uint16_t v)
{
    uint8_t b[2] = { (uint8_t) (v >> 8), (uint8_t) v };

    put(w, b, 2);
}

static void u24(w_t *w, uint32_t v)
{
    uint8_t b[3] = { (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };

    put(w, b, 3);
}

static void u32(w_t *w, uint32_t v)
{
    uint8_t b[4] = { (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };

    put(w, b, 4);
}

static void u64(w_t *w, uint64_t v)
{
    u32(w, (uint32_t) (v >> 32));
    u32(w, (uint32_t) v);
}

static void zeros(w_t *w, size_t n)
{
    static const uint8_t z[64];

    while (n > 0) {
        size_t k = CB_MIN(n, sizeof(z));

        put(w, z, k);
        n -= k;
    }
}

static void fourcc(w_t *w, const char *cc)
{
    put(w, cc, 4);
}

static size_t box_open(w_t *w, const char *type)
{
    size_t at = w->b->len;

    u32(w, 0);
    fourcc(w, type);
    return at;
}

static size_t fullbox_open(w_t *w, const char *type, uint8_t version, uint32_t flags)
{
    size_t at = box_open(w, type);

    u8(w, version);
    u24(w, flags);
    return at;
}

static void patch32(w_t *w, size_t at, uint32_t v)
{
    uint8_t *p = (uint8_t *) w->b->data + at;

    if (w->err)
        return;
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}

static void box_close(w_t *w, size_t at)
{
    patch32(w, at, (uint32_t) (w->b->len - at));
}

/* ---- describing tracks ---- */

/* Start a video track's description: all zero but what every codec sets. */
static void video_track(tc_cmaf_track_t *t, tc_cmaf_vcodec_t vcodec, int width, int height)
{
    memset(t, 0, sizeof(*t));
    t->video = true;
    t->vcodec = vcodec;
    t->timescale = 90000; /* the stream's clock, so sample times need no conversion */
    t->width = width;
    t->height = height;
}

int tc_cmaf_track_h264(tc_cmaf_track_t *t, int width, int height, const uint8_t *extradata,
                       size_t len, char *err, size_t errlen)
{
    const uint8_t *sps = NULL, *pps = NULL, *nal;
    size_t sps_len = 0, pps_len = 0, nal_len, pos = 0, n = 0;
    uint8_t *c = t->config;

    video_track(t, TC_CMAF_AVC, width, height);
    if (len >= 7 && extradata[0] == 1) {
        /* already an avcC */
        if (len > sizeof(t->config))
            goto bad;
        memcpy(t->config, extradata, len);
        t->config_len = len;
        snprintf(t->codecs, sizeof(t->codecs), "avc1.%02x%02x%02x", extradata[1], extradata[2],
                 extradata[3]);
        return 0;
    }
    while (cb_nal_next_annexb(extradata, len, &pos, &nal, &nal_len)) {
        if (nal_len == 0)
            continue;
        if ((nal[0] & 0x1f) == 7 && !sps) {
            sps = nal;
            sps_len = nal_len;
        } else if ((nal[0] & 0x1f) == 8 && !pps) {
            pps = nal;
            pps_len = nal_len;
        }
    }
    if (!sps || sps_len < 4 || !pps || 11 + sps_len + pps_len > sizeof(t->config))
        goto bad;
    c[n++] = 1;      /* configurationVersion */
    c[n++] = sps[1]; /* AVCProfileIndication */
    c[n++] = sps[2]; /* profile_compatibility */
    c[n++] = sps[3]; /* AVCLevelIndication */
    c[n++] = 0xff;   /* 4-byte NAL lengths */
    c[n++] = 0xe1;   /* one SPS */
    c[n++] = (uint8_t) (sps_len >> 8);
    c[n++] = (uint8_t) sps_len;
    memcpy(c + n, sps, sps_len);
    n += sps_len;
    c[n++] = 1; /* one PPS */
    c[n++] = (uint8_t) (pps_len >> 8);
    c[n++] = (uint8_t) pps_len;
    memcpy(c + n, pps, pps_len);
    n += pps_len;
    t->config_len = n;
    snprintf(t->codecs, sizeof(t->codecs), "avc1.%02x%02x%02x", sps[1], sps[2], sps[3]);
    return 0;
bad:
    snprintf(err, errlen, "h264 encoder headers: no usable SPS/PPS (%zu bytes)", len);
    return -EINVAL;
}

/* Append one hvcC NAL array (array_completeness 1). */
static size_t hvcc_array(uint8_t *c, size_t n, int type, const uint8_t *nal, size_t len)
{
    c[n++] = (uint8_t) (0x80 | type);
    c[n++] = 0;
    c[n++] = 1; /* one NAL unit */
    c[n++] = (uint8_t) (len >> 8);
    c[n++] = (uint8_t) len;
    memcpy(c + n, nal, len);
    return n + len;
}

int tc_cmaf_track_hevc(tc_cmaf_track_t *t, int width, int height, const uint8_t *extradata,
                       size_t len, char *err, size_t errlen)
{
    const uint8_t *ps[3] = { NULL }, *nal; /* VPS, SPS, PPS */
    size_t ps_len[3] = { 0 }, nal_len, pos = 0, n = 0, i;
    uint8_t *c = t->config, ptl[12], rbsp[256];
    uint32_t sub_layers, chroma, depth_luma, depth_chroma, compat_rev = 0;
    int last;
    cb_bits_t r = { .p = rbsp };

    video_track(t, TC_CMAF_HEVC, width, height);
    while (cb_nal_next_annexb(extradata, len, &pos, &nal, &nal_len)) {
        int type = nal_len >= 2 ? (nal[0] >> 1) & 0x3f : -1;
        if (type >= 32 && type <= 34 && !ps[type - 32]) {
            ps[type - 32] = nal;
            ps_len[type - 32] = nal_len;
        }
    }
    if (!ps[0] || !ps[1] || !ps[2] ||
        23 + 3 * 5 + ps_len[0] + ps_len[1] + ps_len[2] > sizeof(t->config))
        goto bad;
    /* SPS: after the 2-byte header, 4+3+1 bits, then profile_tier_level */
    r.len = cb_nal_unescape(ps[1] + 2, ps_len[1] - 2, rbsp, sizeof(rbsp));
    cb_bits_read(&r, 4); /* sps_video_parameter_set_id */
    sub_layers = cb_bits_read(&r, 3);
    cb_bits_read(&r, 1); /* temporal_id_nesting */
    for (i = 0; i < 12; i++)
        ptl[i] = (uint8_t) cb_bits_read(&r, 8); /* general profile, flags, constraints, level */
    {
        uint32_t prof_present = 0, level_present = 0;
        for (i = 0; i < sub_layers; i++) {
            prof_present |= cb_bits_read(&r, 1) << i;
            level_present |= cb_bits_read(&r, 1) << i;
        }
        if (sub_layers > 0)
            cb_bits_read(&r, 2 * (8 - (int) sub_layers));
        for (i = 0; i < sub_layers; i++) {
            if (prof_present >> i & 1) {
                cb_bits_read(&r, 32);
                cb_bits_read(&r, 32);
                cb_bits_read(&r, 24);
            }
            if (level_present >> i & 1)
                cb_bits_read(&r, 8);
        }
    }
    cb_bits_ue(&r); /* sps_seq_parameter_set_id */
    chroma = cb_bits_ue(&r);
    if (chroma == 3)
        cb_bits_read(&r, 1);
    cb_bits_ue(&r); /* width */
    cb_bits_ue(&r); /* height */
    if (cb_bits_read(&r, 1)) {
        for (i = 0; i < 4; i++)
            cb_bits_ue(&r); /* conformance window */
    }
    depth_luma = cb_bits_ue(&r) + 8;
    depth_chroma = cb_bits_ue(&r) + 8;
    if (r.overrun || chroma > 3 || depth_luma > 16 || depth_chroma > 16)
        goto bad;

    c[n++] = 1;             /* configurationVersion */
    memcpy(c + n, ptl, 12); /* profile space/tier/idc, compat flags, constraints, level */
    n += 12;
    c[n++] = 0xf0; /* min_spatial_segmentation_idc 0 */
    c[n++] = 0x00;
    c[n++] = 0xfc; /* parallelismType unknown */
    c[n++] = (uint8_t) (0xfc | chroma);
    c[n++] = (uint8_t) (0xf8 | (depth_luma - 8));
    c[n++] = (uint8_t) (0xf8 | (depth_chroma - 8));
    c[n++] = 0; /* avgFrameRate */
    c[n++] = 0;
    /* constantFrameRate 0, numTemporalLayers, temporalIdNested, 4-byte lengths */
    c[n++] = (uint8_t) (((sub_layers + 1) & 7) << 3 | (ps[1][2] & 1) << 2 | 3);
    c[n++] = 3; /* numOfArrays */
    for (i = 0; i < 3; i++)
        n = hvcc_array(c, n, 32 + (int) i, ps[i], ps_len[i]);
    t->config_len = n;

    /* ISO/IEC 14496-15 E.3: hvc1.<space><profile>.<compat, bit-reversed>.<tier><level>.<constraints> */
    for (i = 0; i < 32; i++)
        compat_rev |= ((uint32_t) (ptl[1 + i / 8] >> (7 - i % 8)) & 1) << i;
    n = (size_t) snprintf(t->codecs, sizeof(t->codecs), "hvc1.%s%u.%X.%c%u",
                          (const char *[]){ "", "A", "B", "C" }[ptl[0] >> 6], ptl[0] & 0x1f,
                          compat_rev, ptl[0] & 0x20 ? 'H' : 'L', ptl[11]);
    for (last = 5; last >= 0 && ptl[5 + last] == 0; last--)
        ;
    for (i = 0; (int) i <= last && n + 4 < sizeof(t->codecs); i++)
        n += (size_t) snprintf(t->codecs + n, sizeof(t->codecs) - n, ".%X", ptl[5 + i]);
    return 0;
bad:
    snprintf(err, errlen, "hevc encoder headers: no usable VPS/SPS/PPS (%zu bytes)", len);
    return -EINVAL;
}

#define OBU_SEQUENCE_HEADER    1
#define OBU_TEMPORAL_DELIMITER 2

/*
 * The next OBU of a low-overhead bitstream at *pos: 1 with the whole OBU
 * (header and payload) in obu/obu_len, 0 at the end, -EINVAL when a header
 * or size runs past the data. An OBU without a size field runs to the end.
 */
static int obu_next(const uint8_t *p, size_t len, size_t *pos, const uint8_t **obu, size_t *obu_len)
{
    size_t at = *pos, hdr, size = 0;
    int shift = 0;

    if (at >= len)
        return 0;
    hdr = (p[at] & 0x04) ? 2 : 1; /* obu_extension_flag */
    if (at + hdr > len)
        return -EINVAL;
    if (p[at] & 0x02) { /* obu_has_size_field: leb128 */
        for (;;) {
            if (at + hdr >= len || shift > 56)
                return -EINVAL;
            size |= (size_t) (p[at + hdr] & 0x7f) << shift;
            shift += 7;
            if (!(p[at + hdr++] & 0x80))
                break;
        }
        if (size > len - at - hdr)
            return -EINVAL;
    } else {
        size = len - at - hdr;
    }
    *obu = p + at;
    *obu_len = hdr + size;
    *pos = at + hdr + size;
    return 1;
}

int tc_cmaf_track_av1(tc_cmaf_track_t *t, int width, int height, const uint8_t *extradata,
                      size_t len, char *err, size_t errlen)
{
    const uint8_t *obu = NULL, *o;
    size_t obu_len = 0, o_len, pos = 0, hdr;
    uint32_t profile, level, tier = 0;
    cb_bits_t r;
    int rc;

    video_track(t, TC_CMAF_AV1, width, height);
    while ((rc = obu_next(extradata, len, &pos, &o, &o_len)) == 1) {
        if (((o[0] >> 3) & 0xf) == OBU_SEQUENCE_HEADER && !obu) {
            obu = o;
            obu_len = o_len;
        }
    }
    if (!obu || 4 + obu_len > sizeof(t->config))
        goto bad;
    /* the payload starts after the header byte(s) and the leb128 size */
    hdr = (obu[0] & 0x04) ? 2 : 1;
    if (obu[0] & 0x02) {
        while (hdr < obu_len && (obu[hdr] & 0x80))
            hdr++;
        hdr++;
    }
    if (hdr >= obu_len)
        goto bad;
    r = (cb_bits_t){ .p = obu + hdr, .len = obu_len - hdr }; /* AV1 has no emulation bytes */
    profile = cb_bits_read(&r, 3);
    cb_bits_read(&r, 1);       /* still_picture */
    if (cb_bits_read(&r, 1)) { /* reduced_still_picture_header */
        level = cb_bits_read(&r, 5);
    } else {
        bool decoder_model = false;
        if (cb_bits_read(&r, 1)) { /* timing_info_present_flag */
            cb_bits_read(&r, 32);
            cb_bits_read(&r, 32);
            if (cb_bits_read(&r, 1)) { /* equal_picture_interval: uvlc */
                int lead = 0;
                while (!r.overrun && cb_bits_read(&r, 1) == 0 && lead < 32)
                    lead++;
                cb_bits_read(&r, lead);
            }
            decoder_model = cb_bits_read(&r, 1);
            if (decoder_model) {
                cb_bits_read(&r, 5);
                cb_bits_read(&r, 32);
                cb_bits_read(&r, 10);
            }
        }
        cb_bits_read(&r, 1);  /* initial_display_delay_present_flag */
        cb_bits_read(&r, 5);  /* operating_points_cnt_minus_1 */
        cb_bits_read(&r, 12); /* operating_point_idc[0] */
        level = cb_bits_read(&r, 5);
        if (level > 7)
            tier = cb_bits_read(&r, 1);
    }
    if (r.overrun || profile > 2)
        goto bad;
    t->config[0] = 0x81; /* marker, version 1 */
    t->config[1] = (uint8_t) (profile << 5 | level);
    t->config[2] = (uint8_t) (tier << 7 | 0x0c); /* 8-bit, 4:2:0 (subsampling x and y) */
    t->config[3] = 0;
    memcpy(t->config + 4, obu, obu_len);
    t->config_len = 4 + obu_len;
    snprintf(t->codecs, sizeof(t->codecs), "av01.%u.%02u%c.08", profile, level, tier ? 'H' : 'M');
    return 0;
bad:
    snprintf(err, errlen, "av1 encoder headers: no usable sequence header (%zu bytes)", len);
    return -EINVAL;
}

int tc_cmaf_track_aac(tc_cmaf_track_t *t, int sample_rate, int channels, const uint8_t *asc,
                      size_t len, int64_t bitrate_bps, char *err, size_t errlen)
{
    int aot;

    memset(t, 0, sizeof(*t));
    if (len < 2 || len > 64 || sample_rate <= 0 || channels <= 0) {
        snprintf(err, errlen, "aac encoder: no AudioSpecificConfig (%zu bytes)", len);
        return -EINVAL;
    }
    t->timescale = (uint32_t) sample_rate;
    t->sample_rate = sample_rate;
    t->channels = channels;
    t->bitrate_bps = bitrate_bps;
    memcpy(t->config, asc, len);
    t->config_len = len;
    aot = asc[0] >> 3;
    snprintf(t->codecs, sizeof(t->codecs), "mp4a.40.%d", aot);
    return 0;
}

/* ---- init segment ---- */

static void matrix(w_t *w)
{
    static const uint32_t m[9] = { 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000 };

    for (int i = 0; i < 9; i++)
        u32(w, m[i]);
}

static void esds(w_t *w, const tc_cmaf_track_t *t)
{
    size_t at = fullbox_open(w, "esds", 0, 0);
    uint8_t dsi = (uint8_t) t->config_len;

    u8(w, 0x03); /* ES_Descriptor */
    u8(w, (uint8_t) (3 + 2 + 13 + 2 + dsi + 3));
    u16(w, 1);   /* ES_ID */
    u8(w, 0);    /* flags */
    u8(w, 0x04); /* DecoderConfigDescriptor */
    u8(w, (uint8_t) (13 + 2 + dsi));
    u8(w, 0x40);                       /* Audio ISO/IEC 14496-3 */
    u8(w, 0x15);                       /* AudioStream, upstream 0, reserved 1 */
    u24(w, 0);                         /* bufferSizeDB */
    u32(w, (uint32_t) t->bitrate_bps); /* maxBitrate */
    u32(w, (uint32_t) t->bitrate_bps); /* avgBitrate */
    u8(w, 0x05);                       /* DecoderSpecificInfo */
    u8(w, dsi);
    put(w, t->config, t->config_len);
    u8(w, 0x06); /* SLConfigDescriptor */
    u8(w, 1);
    u8(w, 0x02);
    box_close(w, at);
}

static void sample_entry(w_t *w, const tc_cmaf_track_t *t)
{
    size_t at, sub;

    if (t->video) {
        at = box_open(w, (const char *[]){ "avc1", "hvc1", "av01" }[t->vcodec]);
        zeros(w, 6);
        u16(w, 1); /* data_reference_index */
        zeros(w, 16);
        u16(w, (uint16_t) t->width);
        u16(w, (uint16_t) t->height);
        u32(w, 0x00480000); /* 72 dpi */
        u32(w, 0x00480000);
        u32(w, 0);
        u16(w, 1);      /* frame_count */
        zeros(w, 32);   /* compressorname */
        u16(w, 0x0018); /* depth */
        u16(w, 0xffff); /* pre_defined = -1 */
        sub = box_open(w, (const char *[]){ "avcC", "hvcC", "av1C" }[t->vcodec]);
        put(w, t->config, t->config_len);
        box_close(w, sub);
        sub = box_open(w, "pasp");
        u32(w, 1);
        u32(w, 1);
        box_close(w, sub);
        box_close(w, at);
    } else {
        at = box_open(w, "mp4a");
        zeros(w, 6);
        u16(w, 1);
        zeros(w, 8);
        u16(w, (uint16_t) t->channels);
        u16(w, 16);
        u16(w, 0);
        u16(w, 0);
        u32(w, (uint32_t) (t->sample_rate <= 0xffff ? t->sample_rate : 0) << 16);
        esds(w, t);
        box_close(w, at);
    }
}

int tc_cmaf_write_init(const tc_cmaf_track_t *t, cb_buf_t *out)
{
    w_t w = { .b = out };
    size_t moov, trak, mdia, minf, stbl, b;

    b = box_open(&w, "ftyp");
    fourcc(&w, "cmfc");
    u32(&w, 0);
    fourcc(&w, "cmfc");
    fourcc(&w, "iso6");
    fourcc(&w, "mp41");
    box_close(&w, b);

    moov = box_open(&w, "moov");
    b = fullbox_open(&w, "mvhd", 0, 0);
    u32(&w, 0);
    u32(&w, 0);
    u32(&w, 1000); /* timescale */
    u32(&w, 0);    /* duration: unknown, fragmented */
    u32(&w, 0x00010000);
    u16(&w, 0x0100);
    zeros(&w, 10);
    matrix(&w);
    zeros(&w, 24);
    u32(&w, 2); /* next_track_ID */
    box_close(&w, b);

    trak = box_open(&w, "trak");
    b = fullbox_open(&w, "tkhd", 0, 3); /* enabled, in movie */
    u32(&w, 0);
    u32(&w, 0);
    u32(&w, 1); /* track_ID */
    u32(&w, 0);
    u32(&w, 0); /* duration */
    zeros(&w, 8);
    u16(&w, 0);                     /* layer */
    u16(&w, 0);                     /* alternate_group */
    u16(&w, t->video ? 0 : 0x0100); /* volume */
    u16(&w, 0);
    matrix(&w);
    u32(&w, t->video ? (uint32_t) t->width << 16 : 0);
    u32(&w, t->video ? (uint32_t) t->height << 16 : 0);
    box_close(&w, b);

    mdia = box_open(&w, "mdia");
    b = fullbox_open(&w, "mdhd", 0, 0);
    u32(&w, 0);
    u32(&w, 0);
    u32(&w, t->timescale);
    u32(&w, 0);
    u16(&w, 0x55c4); /* "und" */
    u16(&w, 0);
    box_close(&w, b);
    b = fullbox_open(&w, "hdlr", 0, 0);
    u32(&w, 0);
    fourcc(&w, t->video ? "vide" : "soun");
    zeros(&w, 12);
    put(&w, t->video ? "VideoHandler" : "SoundHandler", 13);
    box_close(&w, b);

    minf = box_open(&w, "minf");
    if (t->video) {
        b = fullbox_open(&w, "vmhd", 0, 1);
        zeros(&w, 8);
    } else {
        b = fullbox_open(&w, "smhd", 0, 0);
        zeros(&w, 4);
    }
    box_close(&w, b);
    b = box_open(&w, "dinf");
    {
        size_t dref = fullbox_open(&w, "dref", 0, 0), url;

        u32(&w, 1);
        url = fullbox_open(&w, "url ", 0, 1); /* media in this file */
        box_close(&w, url);
        box_close(&w, dref);
    }
    box_close(&w, b);

    stbl = box_open(&w, "stbl");
    b = fullbox_open(&w, "stsd", 0, 0);
    u32(&w, 1);
    sample_entry(&w, t);
    box_close(&w, b);
    b = fullbox_open(&w, "stts", 0, 0);
    u32(&w, 0);
    box_close(&w, b);
    b = fullbox_open(&w, "stsc", 0, 0);
    u32(&w, 0);
    box_close(&w, b);
    b = fullbox_open(&w, "stsz", 0, 0);
    u32(&w, 0);
    u32(&w, 0);
    box_close(&w, b);
    b = fullbox_open(&w, "stco", 0, 0);
    u32(&w, 0);
    box_close(&w, b);
    box_close(&w, stbl);
    box_close(&w, minf);
    box_close(&w, mdia);
    box_close(&w, trak);

    b = box_open(&w, "mvex");
    {
        size_t trex = fullbox_open(&w, "trex", 0, 0);

        u32(&w, 1); /* track_ID */
        u32(&w, 1); /* default_sample_description_index */
        u32(&w, 0);
        u32(&w, 0);
        u32(&w, 0);
        box_close(&w, trex);
    }
    box_close(&w, b);
    box_close(&w, moov);
    return w.err;
}

/* ---- media segments ---- */

void tc_cmaf_frag_init(tc_cmaf_frag_t *f, size_t max_bytes, size_t max_samples)
{
    memset(f, 0, sizeof(*f));
    f->max_samples = max_samples;
    cb_buf_init(&f->data, max_bytes);
}

void tc_cmaf_frag_release(tc_cmaf_frag_t *f)
{
    free(f->samples);
    f->samples = NULL;
    f->n = f->cap = 0;
    cb_buf_release(&f->data);
}

void tc_cmaf_frag_reset(tc_cmaf_frag_t *f)
{
    f->n = 0;
    cb_buf_reset(&f->data);
}

int tc_cmaf_frag_add(tc_cmaf_frag_t *f, const tc_cmaf_track_t *t, const uint8_t *data, size_t len,
                     int64_t dts, int64_t pts, bool sync)
{
    tc_cmaf_sample_t *s;
    size_t start = f->data.len;
    int rc;

    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        tc_cmaf_sample_t *p;

        if (f->n >= f->max_samples)
            return -E2BIG;
        cap = CB_MIN(cap, f->max_samples);
        p = realloc(f->samples, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        f->samples = p;
        f->cap = cap;
    }
    if (t->video && t->vcodec == TC_CMAF_AV1) {
        const uint8_t *obu;
        size_t obu_len, pos = 0;

        while ((rc = obu_next(data, len, &pos, &obu, &obu_len)) == 1) {
            if (((obu[0] >> 3) & 0xf) == OBU_TEMPORAL_DELIMITER)
                continue;
            rc = cb_buf_append(&f->data, obu, obu_len);
            if (rc)
                break;
        }
        if (rc < 0 || f->data.len == start) {
            cb_buf_truncate(&f->data, start);
            return rc < 0 ? rc : -EINVAL;
        }
    } else if (t->video) {
        const uint8_t *nal;
        size_t nal_len, pos = 0;
        bool hevc = t->vcodec == TC_CMAF_HEVC;

        while (cb_nal_next_annexb(data, len, &pos, &nal, &nal_len)) {
            uint8_t hdr[4] = { (uint8_t) (nal_len >> 24), (uint8_t) (nal_len >> 16),
                               (uint8_t) (nal_len >> 8), (uint8_t) nal_len };
            int type = nal_len == 0 ? -1 : hevc ? (nal[0] >> 1) & 0x3f : nal[0] & 0x1f;

            /* parameter sets live in the avcC/hvcC; access unit delimiters are noise */
            if (type < 0 || (hevc ? type >= 32 && type <= 35 : type >= 7 && type <= 9))
                continue;
            rc = cb_buf_append(&f->data, hdr, 4);
            if (rc == 0)
                rc = cb_buf_append(&f->data, nal, nal_len);
            if (rc) {
                cb_buf_truncate(&f->data, start);
                return rc;
            }
        }
        if (f->data.len == start)
            return -EINVAL;
    } else {
        rc = cb_buf_append(&f->data, data, len);
        if (rc)
            return rc;
    }
    s = &f->samples[f->n++];
    s->dts = dts;
    s->cts_offset = pts - dts;
    s->offset = start;
    s->len = f->data.len - start;
    s->sync = sync;
    return 0;
}

int tc_cmaf_frag_write(const tc_cmaf_frag_t *f, const tc_cmaf_track_t *t, uint32_t seq,
                       int64_t last_duration, bool styp, cb_buf_t *out)
{
    w_t w = { .b = out };
    size_t moof, traf, trun, b, data_offset_at;
    uint32_t flags = 0x000001 | 0x000100 | 0x000200 | 0x000400;
    size_t i;

    if (f->n == 0)
        return -EINVAL;
    if (t->video)
        flags |= 0x000800; /* composition time offsets */
    if (styp) {
        b = box_open(&w, "styp");
        fourcc(&w, "msdh");
        u32(&w, 0);
        fourcc(&w, "msdh");
        fourcc(&w, "msix");
        box_close(&w, b);
    }

    moof = box_open(&w, "moof");
    b = fullbox_open(&w, "mfhd", 0, 0);
    u32(&w, seq);
    box_close(&w, b);
    traf = box_open(&w, "traf");
    b = fullbox_open(&w, "tfhd", 0, 0x020000); /* default-base-is-moof */
    u32(&w, 1);
    box_close(&w, b);
    b = fullbox_open(&w, "tfdt", 1, 0);
    u64(&w, (uint64_t) f->samples[0].dts);
    box_close(&w, b);
    trun = fullbox_open(&w, "trun", 1, flags);
    u32(&w, (uint32_t) f->n);
    data_offset_at = out->len;
    u32(&w, 0);
    for (i = 0; i < f->n; i++) {
        const tc_cmaf_sample_t *s = &f->samples[i];
        int64_t d = i + 1 < f->n ? f->samples[i + 1].dts - s->dts : last_duration;

        u32(&w, (uint32_t) CB_MAX(d, 0));
        u32(&w, (uint32_t) s->len);
        /* sync: depends on nothing; otherwise depends on others, non-sync */
        u32(&w, s->sync ? 0x02000000 : 0x01010000);
        if (t->video)
            u32(&w, (uint32_t) (int32_t) s->cts_offset);
    }
    box_close(&w, trun);
    box_close(&w, traf);
    box_close(&w, moof);
    /* default-base-is-moof: the first sample's offset from the moof's start */
    patch32(&w, data_offset_at, (uint32_t) (out->len + 8 - moof));
    u32(&w, (uint32_t) (8 + f->data.len));
    fourcc(&w, "mdat");
    put(&w, f->data.data, f->data.len);
    return w.err;
}
