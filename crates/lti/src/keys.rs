//! The tool's own RSA signing keys (Security Framework §6: the tool publishes a JWKS).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::fmt;

/// Failures creating, loading or using a tool key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolKeyError {
    #[error("RSA key generation failed")]
    Generate,
    #[error("the stored private key is not a valid PKCS#8 RSA key")]
    Invalid,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// An RSA-2048 key pair with its `kid`. The private half never leaves this type except as
/// the PKCS#8 document handed to encrypted storage.
#[derive(Clone)]
pub struct ToolKey {
    kid: String,
    pkcs8_der: Vec<u8>,
    encoding: EncodingKey,
    public_jwk: Jwk,
}

impl fmt::Debug for ToolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolKey")
            .field("kid", &self.kid)
            .field("private", &"[redacted]")
            .finish()
    }
}

impl ToolKey {
    /// Generates a fresh RSA-2048 key with the given `kid`.
    pub fn generate(kid: impl Into<String>) -> Result<Self, ToolKeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| ToolKeyError::Generate)?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
            .map_err(|_| ToolKeyError::Generate)?;
        Self::from_pkcs8_der(kid, der.as_ref())
    }

    /// Loads a key from its PKCS#8 DER form.
    pub fn from_pkcs8_der(kid: impl Into<String>, der: &[u8]) -> Result<Self, ToolKeyError> {
        let kid = kid.into();
        // jsonwebtoken's DER entry point wants PKCS#1; its PEM path unwraps PKCS#8.
        let pem = pem_encode("PRIVATE KEY", der);
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| ToolKeyError::Invalid)?;
        let mut public_jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|_| ToolKeyError::Invalid)?;
        public_jwk.common.key_id = Some(kid.clone());
        public_jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        public_jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        Ok(Self {
            kid,
            pkcs8_der: der.to_vec(),
            encoding,
            public_jwk,
        })
    }

    /// The key id published in the JWKS and put in every JWT header we sign.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as PKCS#8 DER, for encrypted storage only.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// The public JWK: `kty`, `n`, `e`, `kid`, `alg`, `use`. No private parameters.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// Signs claims as an RS256 JWT carrying our `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, ToolKeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ToolKeyError::Sign(e.to_string()))
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::AlgorithmParameters;

    #[test]
    fn key_round_trips_through_pkcs8_and_publishes_only_public_parameters() {
        let key = ToolKey::generate("k1").unwrap();
        let again = ToolKey::from_pkcs8_der("k1", key.pkcs8_der()).unwrap();
        assert_eq!(key.public_jwk(), again.public_jwk());
        let json = serde_json::to_value(key.public_jwk()).unwrap();
        let obj = json.as_object().unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(!obj.contains_key(private), "JWK leaks {private}");
        }
        assert_eq!(obj["kid"], "k1");
        assert_eq!(obj["alg"], "RS256");
        assert_eq!(obj["use"], "sig");
        assert!(matches!(
            key.public_jwk().algorithm,
            AlgorithmParameters::RSA(_)
        ));
        assert!(format!("{key:?}").contains("[redacted]"));
    }

    #[test]
    fn signature_verifies_with_the_published_jwk() {
        let key = ToolKey::generate("k2").unwrap();
        let token = key.sign(&serde_json::json!({"hello": "world"})).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_jwk(key.public_jwk()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &v).unwrap();
        assert_eq!(data.claims["hello"], "world");
        assert_eq!(data.header.kid.as_deref(), Some("k2"));
    }
}
