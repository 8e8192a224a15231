-- A device's boot session (wire format version 2): a rebooted device counts samples from 0
-- again, so a beat's natural key is (device, session, sample index). Rows written before this
-- migration keep session ''. Alarm ids carry the session already (device:session:kind:start).

ALTER TABLE beats ADD COLUMN session_id text NOT NULL DEFAULT '';
ALTER TABLE beats DROP CONSTRAINT beats_pkey;
ALTER TABLE beats ADD PRIMARY KEY (device_id, session_id, sample_index);

ALTER TABLE beats_shadow ADD COLUMN session_id text NOT NULL DEFAULT '';
ALTER TABLE beats_shadow DROP CONSTRAINT beats_shadow_pkey;
ALTER TABLE beats_shadow ADD PRIMARY KEY (model_version, device_id, session_id, sample_index);

ALTER TABLE beats_staging ADD COLUMN session_id text NOT NULL DEFAULT '';
ALTER TABLE beats_staging DROP CONSTRAINT beats_staging_pkey;
ALTER TABLE beats_staging ADD PRIMARY KEY (model_version, device_id, session_id, sample_index);
