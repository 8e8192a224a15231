-- A request budget per API key; NULL = the deployment's default (ECGSTREAM_API__REQUESTS_PER_MINUTE).

ALTER TABLE api_keys
    ADD COLUMN requests_per_minute integer CHECK (requests_per_minute > 0);
