-- AF and VF episodes have a duration: the stream publishes their end ("event": "ended" on
-- ecg.alerts) and records it on the alarm that opened the episode. NULL = ongoing, or a kind
-- without a duration.

ALTER TABLE alarms ADD COLUMN end_sample bigint;
ALTER TABLE alarms ADD COLUMN end_time timestamptz;
