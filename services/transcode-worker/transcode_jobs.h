/*
 * transcode_jobs.h - the worker's job loop: TranscodeJob messages from
 * Kafka in, CMAF renditions into storage, TranscodeDone out.
 *
 * Two lanes, both members of the consumer group transcode-worker: the
 * normal lane consumes media.transcode.jobs, the priority lane
 * media.transcode.jobs.high. Both feed one gate of `jobs` slots (the jobs
 * transcoded at once); a priority job waiting for a slot always gets the
 * next free one before any normal job.
 *
 * One job, in order:
 *   1. decode and check the message (invalid: dead letter);
 *   2. take a slot; if the job's done record exists, it was finished
 *      before (a redelivery after a crash): commit, produce nothing;
 *   3. transcode the source segment, each output segment put into storage
 *      atomically as it is cut:
 *        <kind>/<stream>/<rendition>/init-<content hash>.mp4
 *        <kind>/<stream>/<rendition>/<start pts, 90 kHz>.m4s
 *      so the same job on any worker writes the same keys and bytes;
 *   4. produce TranscodeDone and wait for the broker's acknowledgement;
 *   5. write the done record <kind>/<stream>/done/<seq>.json (the done
 *      message itself); only then is the offset committed.
 * A source that cannot be transcoded (corrupt, truncated, unsupported,
 * missing, unknown profile) gets a failed TranscodeDone (the packager marks
 * a gap) and its message goes to media.transcode.jobs.dlq with the reason.
 * A job over its time budget is cancelled and produced again on its topic
 * so any worker may take it, up to job_attempts times; then it fails.
 *
 * Shutdown: no new jobs; jobs in hand finish until one second before the
 * grace deadline and are committed; the rest are cancelled and left
 * uncommitted, so the group hands them to another worker.
 */
#ifndef TRANSCODE_JOBS_H
#define TRANSCODE_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "daemon.h"
#include "kafka.h"
#include "metrics.h"
#include "storage.h"

typedef struct tc_jobs_config {
    int64_t jobs;           /* transcoded at once */
    int64_t job_timeout_ms; /* time budget of one attempt */
    int64_t job_attempts;   /* attempts before a job that overruns fails */
    int hw_encoder;         /* tc_hw_t: hardware encoder to try first */
    char *hw_device;        /* VAAPI render node */
} tc_jobs_config_t;

extern const cb_config_key_t tc_jobs_config_keys[];

typedef struct tc_jobs tc_jobs_t;

/* Create the two lanes (not yet consuming). The producer and storage are borrowed. */
int tc_jobs_new(const tc_jobs_config_t *cfg, const cb_kafka_config_t *kafka,
                cb_kafka_producer_t *producer, cb_storage_t *storage, cb_metrics_t *metrics,
                tc_jobs_t **out, char *err, size_t errlen);

/* Subscribe both lanes. */
int tc_jobs_start(tc_jobs_t *j);

/* ready: both lanes reach the cluster; drain: as described above; free. */
extern const cb_component_ops_t tc_jobs_component;

#endif /* TRANSCODE_JOBS_H */
