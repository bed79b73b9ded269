-- lmsbridge schema, PostgreSQL dialect. Keep in step with migrations/sqlite.
-- Identifiers are UUID text; times are microseconds since the epoch (BIGINT) so both
-- dialects store and compare them the same way.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    launch_url  TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    prefix      TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL,
    label       TEXT,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE platforms (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    kind            TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    auth_url        TEXT NOT NULL,
    token_url       TEXT NOT NULL,
    jwks_url        TEXT NOT NULL,
    token_audience  TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (issuer, client_id)
);
CREATE INDEX platforms_tenant ON platforms (tenant_id);

CREATE TABLE deployments (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    platform_id    TEXT NOT NULL REFERENCES platforms(id),
    deployment_id  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT,
    UNIQUE (platform_id, deployment_id)
);

CREATE TABLE people (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    platform_id       TEXT NOT NULL REFERENCES platforms(id),
    platform_user_id  TEXT NOT NULL,
    name              TEXT,
    given_name        TEXT,
    family_name       TEXT,
    email             TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (platform_id, platform_user_id)
);
CREATE INDEX people_tenant ON people (tenant_id);

CREATE TABLE contexts (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    platform_id          TEXT NOT NULL REFERENCES platforms(id),
    platform_context_id  TEXT NOT NULL,
    title                TEXT,
    label                TEXT,
    lineitems_url        TEXT,
    memberships_url      TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (platform_id, platform_context_id)
);
CREATE INDEX contexts_tenant ON contexts (tenant_id);

CREATE TABLE resources (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    context_id            TEXT NOT NULL REFERENCES contexts(id),
    platform_resource_id  TEXT NOT NULL,
    title                 TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (context_id, platform_resource_id)
);

CREATE TABLE enrollments (
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    context_id       TEXT NOT NULL REFERENCES contexts(id),
    person_id        TEXT NOT NULL REFERENCES people(id),
    roles            TEXT NOT NULL,
    status           TEXT NOT NULL,
    source           TEXT NOT NULL,
    sync_generation  BIGINT NOT NULL DEFAULT 0,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (context_id, person_id)
);
CREATE INDEX enrollments_tenant ON enrollments (tenant_id);

CREATE TABLE grade_targets (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    platform_id    TEXT NOT NULL REFERENCES platforms(id),
    context_id     TEXT NOT NULL REFERENCES contexts(id),
    resource_id    TEXT REFERENCES resources(id),
    kind           TEXT NOT NULL,
    location       TEXT NOT NULL,
    label          TEXT,
    score_maximum  DOUBLE PRECISION,
    created_at     BIGINT NOT NULL,
    UNIQUE (platform_id, location)
);
CREATE INDEX grade_targets_tenant ON grade_targets (tenant_id);

CREATE TABLE launches (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    platform_id      TEXT NOT NULL REFERENCES platforms(id),
    person_id        TEXT REFERENCES people(id),
    context_id       TEXT REFERENCES contexts(id),
    resource_id      TEXT REFERENCES resources(id),
    grade_target_id  TEXT REFERENCES grade_targets(id),
    message_type     TEXT NOT NULL,
    summary          TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX launches_tenant ON launches (tenant_id, created_at);

CREATE TABLE handoff_codes (
    code_hash   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    launch_id   TEXT NOT NULL REFERENCES launches(id),
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE login_states (
    state_hash       TEXT PRIMARY KEY,
    platform_id      TEXT NOT NULL REFERENCES platforms(id),
    nonce            TEXT NOT NULL,
    target_link_uri  TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);
CREATE INDEX login_states_expiry ON login_states (expires_at);

CREATE TABLE used_nonces (
    platform_id  TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (platform_id, nonce)
);
CREATE INDEX used_nonces_expiry ON used_nonces (expires_at);

CREATE TABLE tool_keys (
    kid               TEXT PRIMARY KEY,
    encrypted_pkcs8   BYTEA NOT NULL,
    created_at        BIGINT NOT NULL,
    activates_at      BIGINT NOT NULL,
    retires_at        BIGINT
);

CREATE TABLE scores (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    grade_target_id    TEXT NOT NULL REFERENCES grade_targets(id),
    person_id          TEXT NOT NULL REFERENCES people(id),
    score_given        DOUBLE PRECISION,
    score_maximum      DOUBLE PRECISION,
    comment            TEXT,
    activity_progress  TEXT NOT NULL,
    grading_progress   TEXT NOT NULL,
    actor_kind         TEXT NOT NULL,
    actor_id           TEXT NOT NULL,
    timestamp_micros   BIGINT NOT NULL,
    idempotency_key    TEXT,
    request_hash       TEXT NOT NULL,
    state              TEXT NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT NOT NULL,
    lease_owner        TEXT,
    lease_until        BIGINT,
    last_status        BIGINT,
    last_error         TEXT,
    delivered_at       BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX scores_due ON scores (state, next_attempt_at);
CREATE INDEX scores_pair ON scores (grade_target_id, person_id, state);

CREATE TABLE score_attempts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    score_id    TEXT NOT NULL REFERENCES scores(id),
    attempt     BIGINT NOT NULL,
    worker      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    latency_ms  BIGINT NOT NULL,
    status      BIGINT,
    outcome     TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX score_attempts_score ON score_attempts (score_id);

-- The audit log: one hash chain per tenant (and one, 'system', for instance-wide changes).
CREATE TABLE audit_heads (
    chain  TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL,
    hash   TEXT NOT NULL
);

CREATE TABLE audit_log (
    chain       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    tenant_id   TEXT,
    at          BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
