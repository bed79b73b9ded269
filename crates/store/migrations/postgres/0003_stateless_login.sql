-- The login state is sealed into the OIDC `state` parameter itself (see the server's
-- login_state module); single use comes from used_nonces. Nothing is stored at login.
DROP TABLE login_states;
