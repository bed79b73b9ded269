//! Hashing, random tokens and encryption at rest.

use crate::error::StoreError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use base64::Engine;
use std::fmt;

/// The key that encrypts tool private keys and other secrets at rest. Never printed.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        fill_random(&mut k);
        Self(k)
    }

    /// Parses the base64 form (standard or URL-safe, padding optional) of 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, StoreError> {
        let s = s.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('='))
            })
            .map_err(|_| StoreError::Crypto("master key is not base64"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            StoreError::Crypto("master key must be 32 bytes (base64 of 32 random bytes)")
        })?;
        Ok(Self(key))
    }

    /// The base64 form, for writing the key file.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Encrypts with AES-256-GCM; `context` is bound as associated data so a ciphertext
    /// cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, StoreError> {
        let key = self.aead()?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut buf,
        )
        .map_err(|_| StoreError::Crypto("encryption failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(1u8); // format version
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, StoreError> {
        let (Some(1), Some(nonce), Some(body)) = (
            sealed.first().copied(),
            sealed.get(1..1 + NONCE_LEN),
            sealed.get(1 + NONCE_LEN..),
        ) else {
            return Err(StoreError::Crypto("sealed value has an unknown format"));
        };
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| StoreError::Crypto("sealed value has an unknown format"))?;
        let key = self.aead()?;
        let mut buf = body.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| {
                StoreError::Crypto("decryption failed: wrong master key or tampered data")
            })?;
        Ok(plain.to_vec())
    }

    fn aead(&self) -> Result<LessSafeKey, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &self.0)
            .map_err(|_| StoreError::Crypto("bad master key"))?;
        Ok(LessSafeKey::new(unbound))
    }
}

/// Fills a buffer from the system CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    // aws-lc's RNG only fails if the OS has no entropy source, and then nothing is safe.
    aws_lc_rs::rand::fill(buf).expect("system random number generator unavailable");
}

/// A URL-safe random token with `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Lower-case hex SHA-256 of the input.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Lower-case hex HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    hex(aws_lc_rs::hmac::sign(&key, message).as_ref())
}

/// Compares secrets in constant time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"secret", "tool_key:a").unwrap();
        assert_eq!(k.open(&sealed, "tool_key:a").unwrap(), b"secret");
        assert!(
            k.open(&sealed, "tool_key:b").is_err(),
            "moved ciphertext must not open"
        );
        let other = MasterKey::generate();
        assert!(other.open(&sealed, "tool_key:a").is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k.open(&tampered, "tool_key:a").is_err());
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }

    #[test]
    fn master_key_parsing() {
        let k = MasterKey::generate();
        let again = MasterKey::from_base64(&k.to_base64()).unwrap();
        assert_eq!(k.0, again.0);
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("***").is_err());
    }

    #[test]
    fn hashes() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(random_token(32).len(), 43);
    }
}
