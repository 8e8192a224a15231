-- API keys of the REST API. Only a hash of the secret part is stored: a leaked table does not
-- give access. key_id is the public part (shown in lists and logs); revoked keys are kept.

CREATE TABLE api_keys (
    key_id      text        PRIMARY KEY,
    name        text        NOT NULL,
    secret_sha256 text      NOT NULL,
    scopes      text[]      NOT NULL DEFAULT ARRAY['classify'],
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
