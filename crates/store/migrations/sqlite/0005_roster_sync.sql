-- Roster sync by LTI Names and Role Provisioning Services: the state of each sync, and what
-- NRPS says of a person that a launch does not.
--
-- Enrolments already carry `status` (active, inactive, deleted) and `sync_generation`: a full
-- sync stamps every member it sees with its generation, and when it finishes, enrolments of
-- the context left on an older generation (and not touched by a launch meanwhile) are marked
-- deleted.

ALTER TABLE people ADD COLUMN picture TEXT;
ALTER TABLE people ADD COLUMN lis_person_sourcedid TEXT;

CREATE INDEX enrollments_context_generation ON enrollments (context_id, sync_generation);

CREATE TABLE roster_syncs (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    context_id       TEXT NOT NULL REFERENCES contexts(id),
    kind             TEXT NOT NULL CHECK (kind IN ('full', 'differences')),
    state            TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    generation       BIGINT NOT NULL,
    -- The page to read next: where a sync interrupted by a restart resumes.
    next_url         TEXT,
    -- The platform's rel="differences" link, for the next incremental sync.
    differences_url  TEXT,
    pages_fetched    BIGINT NOT NULL DEFAULT 0,
    members_seen     BIGINT NOT NULL DEFAULT 0,
    added            BIGINT NOT NULL DEFAULT 0,
    updated          BIGINT NOT NULL DEFAULT 0,
    removed          BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error            TEXT,
    lease_owner      TEXT,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX roster_syncs_context ON roster_syncs (tenant_id, context_id, created_at);
CREATE INDEX roster_syncs_unfinished ON roster_syncs (state, lease_until);
-- One sync per context at a time, whichever instance started it.
CREATE UNIQUE INDEX roster_syncs_one_active ON roster_syncs (context_id)
    WHERE state IN ('queued', 'running');
