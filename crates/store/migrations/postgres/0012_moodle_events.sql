-- The Moodle plugin's events: paired sites, every event received (deduplicated by the site's
-- event id), and the state they build that LTI cannot see: enrolments per enrolment method,
-- course and activity completion, grades overridden inside Moodle, deleted users.
--
-- State rows carry `state_at` (the Moodle event's time, microseconds) and `state_seq` (the
-- plugin's outbox sequence; 0 for events made up by reconciliation) so an event older than
-- what is stored never overwrites it, whatever order events arrive in.

CREATE TABLE moodle_sites (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    platform_id         TEXT NOT NULL REFERENCES platforms(id),
    site_url            TEXT NOT NULL,
    secret_sealed       BYTEA NOT NULL,
    ws_token_sealed     BYTEA,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT,
    last_seq            BIGINT NOT NULL DEFAULT 0,
    last_reconciled_at  BIGINT,
    reconcile_lease_until BIGINT,
    revoked_at          BIGINT
);
CREATE INDEX moodle_sites_tenant ON moodle_sites (tenant_id);
-- One live pairing per Moodle platform registration.
CREATE UNIQUE INDEX moodle_sites_one_per_platform ON moodle_sites (platform_id) WHERE revoked_at IS NULL;

CREATE TABLE moodle_events (
    site_id      TEXT NOT NULL REFERENCES moodle_sites(id),
    event_id     TEXT NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    seq          BIGINT NOT NULL,
    name         TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    course_id    BIGINT,
    user_id      BIGINT,
    cm_id        BIGINT,
    payload      TEXT NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('plugin', 'reconcile')),
    outcome      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (site_id, event_id)
);
CREATE INDEX moodle_events_tenant ON moodle_events (tenant_id, received_at);

CREATE TABLE moodle_courses (
    site_id     TEXT NOT NULL REFERENCES moodle_sites(id),
    course_id   BIGINT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    context_id  TEXT NOT NULL REFERENCES contexts(id),
    PRIMARY KEY (site_id, course_id)
);

CREATE TABLE moodle_enrolments (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    context_id   TEXT NOT NULL REFERENCES contexts(id),
    person_id    TEXT NOT NULL REFERENCES people(id),
    enrol        TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    roles        TEXT NOT NULL,
    time_start   BIGINT,
    time_end     BIGINT,
    state_at     BIGINT NOT NULL,
    state_seq    BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (context_id, person_id, enrol)
);
CREATE INDEX moodle_enrolments_tenant ON moodle_enrolments (tenant_id);

CREATE TABLE course_completions (
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    context_id    TEXT NOT NULL REFERENCES contexts(id),
    person_id     TEXT NOT NULL REFERENCES people(id),
    completed_at  BIGINT NOT NULL,
    state_at      BIGINT NOT NULL,
    state_seq     BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (context_id, person_id)
);
CREATE INDEX course_completions_tenant ON course_completions (tenant_id);

CREATE TABLE activity_completions (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    context_id        TEXT NOT NULL REFERENCES contexts(id),
    person_id         TEXT NOT NULL REFERENCES people(id),
    activity_id       TEXT NOT NULL,
    modname           TEXT NOT NULL,
    instance_id       BIGINT,
    resource_id       TEXT,
    completion_state  BIGINT NOT NULL,
    state_at          BIGINT NOT NULL,
    state_seq         BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (context_id, person_id, activity_id)
);
CREATE INDEX activity_completions_tenant ON activity_completions (tenant_id);

CREATE TABLE grade_overrides (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    context_id     TEXT NOT NULL REFERENCES contexts(id),
    person_id      TEXT NOT NULL REFERENCES people(id),
    item_id        TEXT NOT NULL,
    item_type      TEXT,
    item_module    TEXT,
    item_instance  BIGINT,
    item_name      TEXT,
    final_grade    DOUBLE PRECISION,
    grade_max      DOUBLE PRECISION,
    overridden     BOOLEAN NOT NULL,
    grader_id      TEXT,
    feedback       TEXT,
    state_at       BIGINT NOT NULL,
    state_seq      BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (context_id, person_id, item_id)
);
CREATE INDEX grade_overrides_tenant ON grade_overrides (tenant_id);

-- Users deleted in Moodle: later (or late) events about them change nothing.
CREATE TABLE moodle_deleted_users (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    platform_id  TEXT NOT NULL REFERENCES platforms(id),
    person_id    TEXT NOT NULL REFERENCES people(id),
    deleted_at   BIGINT NOT NULL,
    PRIMARY KEY (platform_id, person_id)
);
