//! The OIDC login state, sealed rather than stored.
//!
//! The `state` parameter is the login's own record, encrypted and authenticated with the
//! master key (AES-256-GCM): which registration, the nonce, the target, when it expires, and
//! the platform-storage secret. Any instance holding the master key can open it, nothing is
//! written at login, and a state nobody sealed, or one that was altered, does not open.
//! Single use comes from the nonce, recorded under a unique key in the same transaction as
//! the launch it admits.

use domain::PlatformId;
use serde::{Deserialize, Serialize};
use store::crypto::MasterKey;
use store::now_micros;

const CONTEXT: &str = "lmsbridge-login-state";
/// States longer than this are not ours (ours are about 300 characters).
const MAX_STATE_LEN: usize = 2048;

/// What the login step hands to the launch step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    pub platform_id: PlatformId,
    pub nonce: String,
    pub target_link_uri: String,
    /// Microseconds since the epoch.
    pub expires_at: i64,
    pub storage_target: Option<String>,
    pub storage_secret: Option<String>,
}

/// The `state` value for a login.
pub fn seal(master: &MasterKey, login: &LoginState) -> anyhow::Result<String> {
    use base64::Engine;
    let json = serde_json::to_vec(login)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(master.seal(&json, CONTEXT)?))
}

/// Opens a `state`; `None` for anything not sealed by us, altered, or expired.
pub fn open(master: &MasterKey, state: &str) -> Option<LoginState> {
    use base64::Engine;
    if state.len() > MAX_STATE_LEN {
        return None;
    }
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(state)
        .ok()?;
    let json = master.open(&sealed, CONTEXT).ok()?;
    let login: LoginState = serde_json::from_slice(&json).ok()?;
    (login.expires_at > now_micros()).then_some(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(expires_at: i64) -> LoginState {
        LoginState {
            platform_id: PlatformId::generate(),
            nonce: "n".into(),
            target_link_uri: "https://tool.example/lti/launch".into(),
            expires_at,
            storage_target: None,
            storage_secret: None,
        }
    }

    #[test]
    fn only_our_unaltered_unexpired_states_open() {
        let master = MasterKey::generate();
        let l = login(now_micros() + 60_000_000);
        let state = seal(&master, &l).unwrap();
        assert!(state.len() < 400);
        assert_eq!(open(&master, &state), Some(l.clone()));
        assert_eq!(
            open(&MasterKey::generate(), &state),
            None,
            "another instance's key"
        );
        let mut altered = state.clone().into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(&master, std::str::from_utf8(&altered).unwrap()), None);
        assert_eq!(open(&master, "forged"), None);
        assert_eq!(open(&master, &"A".repeat(5000)), None);
        let expired = seal(&master, &login(now_micros() - 1)).unwrap();
        assert_eq!(open(&master, &expired), None);
    }
}
