//! The tool keyring: signing with the current key only, verifying our own tokens with every
//! key still published, and what rotation does to both.

use server::keyring::{Keyring, OwnTokenError};
use store::crypto::MasterKey;
use store::testing::TestDatabase;

fn claims(exp_offset: i64) -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    serde_json::json!({"sub": "deep-link-state", "exp": now + exp_offset})
}

#[tokio::test]
async fn rotation_keeps_old_tokens_verifiable_through_the_grace_period_only() {
    let db = TestDatabase::sqlite().await.unwrap();
    let ring = Keyring::open(db.store.clone(), MasterKey::generate())
        .await
        .unwrap();
    let first = ring.current().unwrap();
    let old_token = first.sign(&claims(300)).unwrap();
    let v: serde_json::Value = ring.verify_own(&old_token).unwrap();
    assert_eq!(v["sub"], "deep-link-state");

    // A new key that signs at once; the old one stays published for an hour.
    let second_kid = ring
        .rotate(0, 3600, &domain::Actor::system("t"))
        .await
        .unwrap();
    let second = ring.current().unwrap();
    assert_eq!(second.kid(), second_kid, "only the newest key signs");
    assert_ne!(second.kid(), first.kid());
    assert!(
        ring.verify_own::<serde_json::Value>(&old_token).is_ok(),
        "old tokens verify in the grace period"
    );
    assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);

    // No grace: every older key retires now, and what it signed no longer verifies.
    ring.rotate(0, 0, &domain::Actor::system("t"))
        .await
        .unwrap();
    assert!(matches!(
        ring.verify_own::<serde_json::Value>(&old_token),
        Err(OwnTokenError::UnknownKey)
    ));
    assert_eq!(
        ring.jwks()["keys"].as_array().unwrap().len(),
        1,
        "retired keys leave the JWKS"
    );

    // Expired tokens and other algorithms are refused.
    let current = ring.current().unwrap();
    let expired = current.sign(&claims(-600)).unwrap();
    assert!(matches!(
        ring.verify_own::<serde_json::Value>(&expired),
        Err(OwnTokenError::Invalid(_))
    ));
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(60),
        &jsonwebtoken::EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    assert!(matches!(
        ring.verify_own::<serde_json::Value>(&hs),
        Err(OwnTokenError::Shape)
    ));
    db.cleanup().await;
}
