-- Deployments a platform creates on its own (Canvas makes one per install) can be recorded
-- as pending for an admin to approve, when the registration allows it.
ALTER TABLE deployments ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE platforms ADD COLUMN accept_new_deployments BOOLEAN NOT NULL DEFAULT FALSE;

-- Logins whose platform offered LTI platform storage (lti_storage_target) keep the secret
-- the browser stored there, so the launch can be bound to the browser without a cookie.
ALTER TABLE login_states ADD COLUMN storage_target TEXT;
ALTER TABLE login_states ADD COLUMN storage_secret TEXT;

-- The tenant's LTI 1.1 consumer key and secret (sealed with the master key), to verify the
-- lti1p1 migration claim of platforms moving an LTI 1.1 install to 1.3.
ALTER TABLE platforms ADD COLUMN lti11_consumer_key TEXT;
ALTER TABLE platforms ADD COLUMN lti11_secret_sealed BYTEA;
