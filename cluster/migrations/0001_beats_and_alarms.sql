-- The two outputs of the streaming pipeline. Every row has a natural key derived from the data
-- (device + sample index), so a re-delivered chunk rewrites the same key and never adds a row.
-- No names or medical record numbers: patient_ref is the pseudonym devices send.

CREATE TABLE beats (
    device_id      text        NOT NULL,
    sample_index   bigint      NOT NULL,   -- R peak, index in the device's sample stream
    patient_ref    text        NOT NULL,
    beat_time      timestamptz NOT NULL,
    label          char(1)     NOT NULL CHECK (label IN ('N', 'S', 'V', 'F', 'Q')),
    probabilities  real[]      NOT NULL,   -- in the model's class order (N, S, V, F)
    rr_prev_s      real,
    model_version  text        NOT NULL,
    latency_ms     real,
    inserted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, sample_index)
);
CREATE INDEX beats_patient_time ON beats (patient_ref, beat_time);

CREATE TABLE alarms (
    alarm_id       text        PRIMARY KEY, -- device, kind and first evidence sample: stable
    device_id      text        NOT NULL,
    patient_ref    text        NOT NULL,
    kind           text        NOT NULL,   -- e.g. vtach, brady, tachy, pause, pvc_burden
    category       text        NOT NULL CHECK (category IN ('clinical', 'technical')),
    severity       text        NOT NULL,
    start_sample   bigint      NOT NULL,
    start_time     timestamptz NOT NULL,
    evidence       jsonb       NOT NULL,
    model_version  text,
    inserted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarms_device_time ON alarms (device_id, start_time);
