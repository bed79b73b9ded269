-- The product's catalog: what a teacher can place into a course by LTI Deep Linking 2.0.
-- Items are archived rather than deleted, so links already placed keep resolving.
CREATE TABLE catalog_items (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    item_type      TEXT NOT NULL,
    title          TEXT NOT NULL,
    text           TEXT,
    url            TEXT NOT NULL,
    custom         TEXT NOT NULL,
    score_maximum  REAL,
    archived       INTEGER NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX catalog_items_tenant ON catalog_items (tenant_id, created_at);

-- Deep linking picker tokens already used: a token is sealed, not stored, so single use is
-- this table's unique key. Rows are kept until the token would have expired anyway.
CREATE TABLE deep_linking_picks (
    jti         TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    used_at     BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX deep_linking_picks_expiry ON deep_linking_picks (expires_at);
