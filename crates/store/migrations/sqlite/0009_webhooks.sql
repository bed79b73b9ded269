-- Product webhooks: where a tenant wants to hear about its scores (one endpoint per tenant,
-- its signing secret sealed with the master key), the deliveries owed to it (an outbox,
-- written in the same transaction as the change it reports), and every attempt to deliver.
CREATE TABLE webhook_endpoints (
    tenant_id      TEXT PRIMARY KEY REFERENCES tenants(id),
    url            TEXT NOT NULL,
    secret_sealed  BLOB NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at);

CREATE TABLE webhook_attempts (
    id           TEXT PRIMARY KEY,
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries(id),
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    attempt      BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    latency_ms   BIGINT NOT NULL,
    status       BIGINT,
    error        TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);
