-- Line items the product manages through the API (AGS §3.2) are grade targets: the row a
-- launch records from the `lineitem` claim and the row the API creates or lists are one row
-- per (platform, line item URL), under the same id, so a score for either goes through the
-- same outbox. These columns keep the line item fields the platform last reported.
ALTER TABLE grade_targets ADD COLUMN tag TEXT;
-- AGS `resourceId`: the product's own id for the activity.
ALTER TABLE grade_targets ADD COLUMN product_resource_id TEXT;
-- AGS `resourceLinkId`: the platform's resource link the column is bound to.
ALTER TABLE grade_targets ADD COLUMN resource_link_id TEXT;
ALTER TABLE grade_targets ADD COLUMN start_date_time BIGINT;
ALTER TABLE grade_targets ADD COLUMN end_date_time BIGINT;
ALTER TABLE grade_targets ADD COLUMN grades_released BOOLEAN;
-- How we first learnt of it: 'launch' (the lineitem claim), 'api' (created by the product),
-- 'platform' (listed from the platform's container).
ALTER TABLE grade_targets ADD COLUMN origin TEXT NOT NULL DEFAULT 'launch';
ALTER TABLE grade_targets ADD COLUMN updated_at BIGINT;
-- Deleted on the platform through the API; kept because scores and launches refer to it.
ALTER TABLE grade_targets ADD COLUMN deleted_at BIGINT;

CREATE INDEX grade_targets_context ON grade_targets (tenant_id, context_id);
