-- LTI Dynamic Registration: registrations a platform makes on its own wait, disabled, for an
-- admin to enable them; the platform's OpenID configuration is kept for the admin to read.
ALTER TABLE platforms ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE platforms ADD COLUMN registered_via TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE platforms ADD COLUMN platform_configuration TEXT;

-- A tenant's registration URL carries one of these secrets, so that only the admins it was
-- given to can register a platform into that tenant. Stored as a hash, like API keys.
CREATE TABLE registration_invites (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    token_hash  TEXT NOT NULL UNIQUE,
    label       TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    used_count  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX registration_invites_tenant ON registration_invites (tenant_id);
