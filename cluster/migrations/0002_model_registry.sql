-- The model registry: every model version with its lineage, the aliases that say which version
-- serves where, their history (for rollback and audit), and every release decision.

CREATE TABLE model_versions (
    version          text        PRIMARY KEY,  -- cnn-<first 12 hex of the weights' sha256>
    artifact_sha256  text        NOT NULL,     -- over every file of the artifact directory
    location         text        NOT NULL,     -- the immutable copy in the artifact store
    data_fingerprint text,                     -- sha256 of the record files trained on
    code_version     text,                     -- git commit of the code that trained it
    hyperparameters  jsonb       NOT NULL,
    metrics          jsonb       NOT NULL,     -- per split: train, validation, test, holdout
    produced_by      text        NOT NULL,     -- e.g. "tune:<experiment>/<trial>", "train", "import"
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_aliases (
    alias       text        PRIMARY KEY CHECK (alias IN ('production', 'staging', 'shadow')),
    version     text        NOT NULL REFERENCES model_versions (version),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_alias_history (
    id          bigserial   PRIMARY KEY,
    alias       text        NOT NULL,
    version     text        REFERENCES model_versions (version),  -- NULL: the alias was cleared
    previous    text        REFERENCES model_versions (version),
    reason      text        NOT NULL,                              -- promote, rollback, shadow...
    changed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE release_decisions (
    id          bigserial   PRIMARY KEY,
    run_id      text        NOT NULL,                               -- one `release run` (or CLI step)
    version     text        REFERENCES model_versions (version),   -- NULL before a version exists
    step        text        NOT NULL,                               -- search, selection, gate, ...
    decision    text        NOT NULL CHECK (decision IN ('pass', 'fail')),
    reasons     jsonb       NOT NULL,
    metrics     jsonb       NOT NULL DEFAULT '{}',
    decided_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX release_decisions_version ON release_decisions (version, decided_at);

-- Beats classified by a candidate, never by the alarm path: the shadow deployment (mirrored live
-- traffic) and the staging deployment (infravalidation replays). One row per model and beat.
CREATE TABLE beats_shadow (LIKE beats INCLUDING DEFAULTS);
ALTER TABLE beats_shadow ADD PRIMARY KEY (model_version, device_id, sample_index);
CREATE TABLE beats_staging (LIKE beats INCLUDING DEFAULTS);
ALTER TABLE beats_staging ADD PRIMARY KEY (model_version, device_id, sample_index);
