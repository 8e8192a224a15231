-- The central station (station/): what people did about alarms, and one-time logins.
-- The audit trail is append-only: an action is never changed or deleted. actor is the name of
-- the API key that acted ("station" for an automatic escalation); no patient identifier here.

CREATE TABLE alarm_actions (
    action_id   bigserial   PRIMARY KEY,
    alarm_id    text        NOT NULL,
    device_id   text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('acknowledge', 'silence', 'escalate',
                                                       'hl7_refused')),
    actor       text        NOT NULL,
    key_id      text,                   -- the key that acted (NULL: the station itself)
    acted_at    timestamptz NOT NULL,
    silence_s   real,                   -- silence: for how long
    detail      text                    -- hl7_refused: the receiver's answer
);
CREATE INDEX alarm_actions_alarm ON alarm_actions (alarm_id);
CREATE INDEX alarm_actions_time ON alarm_actions (acted_at);

-- A one-time login link (`ecgstream station login-link`): only a hash of the token is kept,
-- it expires, and it works once.
CREATE TABLE station_login_tokens (
    token_sha256 text        PRIMARY KEY,
    key_id       text        NOT NULL REFERENCES api_keys (key_id),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
