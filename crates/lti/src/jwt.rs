//! Inspection of a compact JWS before any key is chosen.
//!
//! The header is read by hand so that a refused algorithm gets its own error instead of a
//! generic parse failure, and so that nothing about the payload is trusted yet.

use base64::Engine;
use serde::Deserialize;

/// Largest id_token we accept. Real launches are 2–8 KiB; Canvas with many custom fields
/// stays well under 32 KiB.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The protected header fields we act on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JwsHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
}

/// Why a token could not even be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsShapeError {
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is not a compact JWS with three parts")]
    NotCompact,
    #[error("token header is not base64url-encoded JSON")]
    BadHeader,
}

/// Reads the header of a compact JWS without verifying anything.
pub fn inspect_header(token: &str) -> Result<JwsHeader, JwsShapeError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsShapeError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsShapeError::NotCompact);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| JwsShapeError::BadHeader)?;
    serde_json::from_slice(&bytes).map_err(|_| JwsShapeError::BadHeader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn reads_alg_and_kid() {
        let t = format!("{}.{}.sig", b64(r#"{"alg":"RS256","kid":"a"}"#), b64("{}"));
        let h = inspect_header(&t).unwrap();
        assert_eq!(h.alg, "RS256");
        assert_eq!(h.kid.as_deref(), Some("a"));
    }

    #[test]
    fn refuses_malformed_shapes() {
        assert_eq!(inspect_header("a.b"), Err(JwsShapeError::NotCompact));
        assert_eq!(inspect_header("a.b.c.d"), Err(JwsShapeError::NotCompact));
        assert_eq!(inspect_header("!!.b.c"), Err(JwsShapeError::BadHeader));
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(inspect_header(&big), Err(JwsShapeError::TooLarge));
    }
}
