-- Google Classroom Add-ons and roster push notifications.
--
-- An add-on attachment is a grade target of kind `classroom_add_on_attachment` (location
-- `course/item/attachment`); this table keeps what Classroom told us when it was created and
-- whose offline grant passes its grades back after the teacher has closed the page.
CREATE TABLE google_addon_attachments (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    platform_id      TEXT NOT NULL REFERENCES platforms(id),
    course_id        TEXT NOT NULL,
    item_id          TEXT NOT NULL,
    item_type        TEXT NOT NULL,
    attachment_id    TEXT NOT NULL,
    catalog_item_id  TEXT,
    title            TEXT NOT NULL,
    max_points       BIGINT,
    grade_target_id  TEXT REFERENCES grade_targets(id),
    teacher_user_id  TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (platform_id, attachment_id)
);
CREATE INDEX google_addon_attachments_tenant ON google_addon_attachments (tenant_id);

-- The student's submission id, as getAddOnContext gave it on a student view open: the id
-- addOnAttachments.studentSubmissions.patch needs.
CREATE TABLE google_addon_submissions (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    platform_id     TEXT NOT NULL REFERENCES platforms(id),
    attachment_id   TEXT NOT NULL,
    google_user_id  TEXT NOT NULL,
    submission_id   TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (platform_id, attachment_id, google_user_id)
);

-- Classroom roster-change registrations, one per course; each lapses after a week and is
-- created again before `expires_at`.
CREATE TABLE google_push_registrations (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    platform_id      TEXT NOT NULL REFERENCES platforms(id),
    course_id        TEXT NOT NULL,
    teacher_user_id  TEXT NOT NULL,
    topic            TEXT NOT NULL,
    registration_id  TEXT,
    expires_at       BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    renewed_at       BIGINT,
    renew_lease_until BIGINT,
    last_error       TEXT,
    UNIQUE (platform_id, course_id)
);
CREATE INDEX google_push_registrations_expiry ON google_push_registrations (expires_at);

-- Push messages received (Pub/Sub delivers at least once: the message id deduplicates).
CREATE TABLE google_push_events (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    platform_id     TEXT NOT NULL REFERENCES platforms(id),
    course_id       TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    collection      TEXT,
    event_type      TEXT,
    received_at     BIGINT NOT NULL,
    outcome         TEXT NOT NULL,
    UNIQUE (platform_id, message_id)
);
CREATE INDEX google_push_events_tenant ON google_push_events (tenant_id, received_at);
