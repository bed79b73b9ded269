-- Google Classroom. A tenant's Google OAuth client is a platform row of kind
-- google_classroom (issuer https://accounts.google.com, its client id); its secret is sealed
-- here. Teachers' offline grants (refresh tokens sealed with the master key), the
-- single-use OAuth states any instance can check, the courses linked to contexts with the
-- grant that reads them, and the courseWork lmsbridge created with the grant that grades it.
CREATE TABLE google_clients (
    platform_id           TEXT PRIMARY KEY REFERENCES platforms(id),
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    client_secret_sealed  BYTEA NOT NULL,
    project_number        TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX google_clients_tenant ON google_clients (tenant_id);

CREATE TABLE google_grants (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    platform_id           TEXT NOT NULL REFERENCES platforms(id),
    google_sub            TEXT NOT NULL,
    person_id             TEXT NOT NULL REFERENCES people(id),
    email                 TEXT,
    name                  TEXT,
    -- Space-separated, as Google lists them.
    scopes                TEXT NOT NULL,
    refresh_token_sealed  BYTEA,
    status                TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    status_reason         TEXT,
    revoked_at            BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (platform_id, google_sub)
);
CREATE INDEX google_grants_tenant ON google_grants (tenant_id);

CREATE TABLE google_oauth_states (
    state_hash       TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    platform_id      TEXT NOT NULL REFERENCES platforms(id),
    browser_hash     TEXT NOT NULL,
    verifier_sealed  BYTEA NOT NULL,
    scopes           TEXT NOT NULL,
    login_hint       TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);
CREATE INDEX google_oauth_states_expiry ON google_oauth_states (expires_at);

CREATE TABLE google_courses (
    context_id     TEXT PRIMARY KEY REFERENCES contexts(id),
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    platform_id    TEXT NOT NULL REFERENCES platforms(id),
    course_id      TEXT NOT NULL,
    grant_id       TEXT NOT NULL REFERENCES google_grants(id),
    name           TEXT,
    section        TEXT,
    course_state   TEXT,
    access_state   TEXT NOT NULL DEFAULT 'ok',
    access_error   TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (platform_id, course_id)
);
CREATE INDEX google_courses_tenant ON google_courses (tenant_id, platform_id);

CREATE TABLE google_course_work (
    grade_target_id  TEXT PRIMARY KEY REFERENCES grade_targets(id),
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    platform_id      TEXT NOT NULL REFERENCES platforms(id),
    context_id       TEXT NOT NULL REFERENCES contexts(id),
    grant_id         TEXT NOT NULL REFERENCES google_grants(id),
    course_id        TEXT NOT NULL,
    course_work_id   TEXT NOT NULL,
    max_points       DOUBLE PRECISION NOT NULL,
    grade_mode       TEXT NOT NULL CHECK (grade_mode IN ('draft', 'assigned', 'draft_and_assigned')),
    return_on_grade  BOOLEAN NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (platform_id, course_id, course_work_id)
);
CREATE INDEX google_course_work_tenant ON google_course_work (tenant_id);
