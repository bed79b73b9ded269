//! Google OAuth 2.0 against the simulated Classroom over loopback: consent with PKCE S256,
//! code exchange (a wrong verifier refused, a code used once), refresh, incremental and
//! granular consent, revocation seen as `Revoked`, refusals the admin must act on.

mod common;

use classroom::oauth::{AuthorizationRequest, OAuthError, Revocation};
use classroom::{ApiError, ClientSecret, Credentials, CsrfState, OAuthClient, OAuthConfig, scopes};
use common::{Harness, endpoints, http};
use testkit::classroom::Consent;

#[tokio::test]
async fn consent_round_trip_with_pkce_gives_offline_access() {
    let h = Harness::start().await;
    let teacher = h.fake.teacher();
    let wanted: Vec<&str> = scopes::SIGN_IN
        .iter()
        .chain(scopes::ROSTER)
        .copied()
        .collect();
    let pending = h.oauth.authorization_url(
        &AuthorizationRequest::new(&wanted)
            .login_hint(&teacher.email)
            .require_refresh_token(),
    );
    let back = h.consent_redirect(&pending.url).await;
    // What Google saw: PKCE by S256, offline, incremental, forced consent, the hint.
    let seen = h.fake.authorizations().pop().unwrap();
    assert_eq!(seen.code_challenge_method.as_deref(), Some("S256"));
    assert_eq!(seen.access_type.as_deref(), Some("offline"));
    assert_eq!(seen.include_granted_scopes.as_deref(), Some("true"));
    assert_eq!(seen.prompt.as_deref(), Some("consent"));
    assert_eq!(seen.login_hint.as_deref(), Some(teacher.email.as_str()));
    assert_eq!(seen.user_id.as_deref(), Some(teacher.id.as_str()));
    assert!(!pending.url.as_str().contains(pending.verifier.secret()));

    let callback = OAuthClient::parse_callback(&back, &pending.state).unwrap();
    let grant = h
        .oauth
        .exchange_code(&callback.code, &pending.verifier)
        .await
        .unwrap();
    assert!(grant.refresh_token.is_some());
    assert!(
        grant.scopes.missing(&wanted).is_empty(),
        "{:?}",
        grant.scopes
    );
    assert_eq!(grant.expires_in.as_secs(), 3600);
    let debug = format!("{grant:?}");
    assert!(!debug.contains(grant.access_token.secret()));
    assert!(!debug.contains(grant.refresh_token.as_ref().unwrap().secret()));

    let me = h.oauth.userinfo(&grant.access_token).await.unwrap();
    assert_eq!(me.sub.as_str(), teacher.id);
    assert_eq!(me.email.as_deref(), Some(teacher.email.as_str()));
    assert_eq!(me.given_name.as_deref(), Some("Ada"));
    assert_eq!(me.hd.as_deref(), Some(testkit::classroom::DOMAIN));

    // A code is good once.
    let again = h
        .oauth
        .exchange_code(&callback.code, &pending.verifier)
        .await;
    assert!(
        matches!(again, Err(OAuthError::CodeRejected { .. })),
        "{again:?}"
    );
    assert_eq!(h.fake.stats().code_exchanges, 2);
    h.finish();
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let h = Harness::start().await;
    let wanted = scopes::ROSTER;
    let first = h
        .oauth
        .authorization_url(&AuthorizationRequest::new(wanted));
    let other = h
        .oauth
        .authorization_url(&AuthorizationRequest::new(wanted));
    let back = h.consent_redirect(&first.url).await;
    let callback = OAuthClient::parse_callback(&back, &first.state).unwrap();
    // Another request's verifier (as an attacker holding a stolen code would have).
    let err = h
        .oauth
        .exchange_code(&callback.code, &other.verifier)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OAuthError::CodeRejected { description } if description.contains("code verifier")),
        "{err:?}"
    );
    // The redirect of one request is not accepted for another.
    assert_eq!(
        OAuthClient::parse_callback(&back, &other.state).unwrap_err(),
        OAuthError::StateMismatch
    );
    assert_eq!(
        OAuthClient::parse_callback(&back, &CsrfState::new("forged")).unwrap_err(),
        OAuthError::StateMismatch
    );
    // The attempt spent the code; a fresh consent with the right verifier works.
    assert!(
        h.oauth
            .exchange_code(&callback.code, &first.verifier)
            .await
            .is_err()
    );
    let fresh = h
        .oauth
        .authorization_url(&AuthorizationRequest::new(wanted));
    let back = h.consent_redirect(&fresh.url).await;
    let callback = OAuthClient::parse_callback(&back, &fresh.state).unwrap();
    assert!(
        h.oauth
            .exchange_code(&callback.code, &fresh.verifier)
            .await
            .is_ok()
    );
    h.finish();
}

#[tokio::test]
async fn refresh_gives_a_new_access_token_for_the_same_scopes() {
    let h = Harness::start().await;
    let grant = h.connect(&h.fake.teacher().email, scopes::ROSTER).await;
    let refresh = grant.refresh_token.clone().unwrap();
    let refreshed = h.oauth.refresh(&refresh).await.unwrap();
    assert_ne!(refreshed.access_token, grant.access_token);
    assert_eq!(refreshed.scopes, grant.scopes);
    assert!(refreshed.refresh_token.is_none());
    // Both access tokens work: refreshing does not revoke.
    for token in [grant.access_token, refreshed.access_token] {
        let courses = h
            .api
            .list_courses(&Credentials::Bearer(token), &Default::default())
            .await
            .unwrap();
        assert_eq!(courses.len(), 3);
    }
    assert_eq!(h.fake.stats().refreshes, 1);
    h.finish();
}

#[tokio::test]
async fn a_revoked_refresh_token_is_reported_as_revoked() {
    let h = Harness::start().await;
    let grant = h.connect(&h.fake.teacher().email, scopes::ROSTER).await;
    let refresh = grant.refresh_token.clone().unwrap();
    let creds = Credentials::Offline(refresh.clone());
    let course = classroom::CourseId::new(h.fake.algebra_course_id());
    assert_eq!(
        h.api
            .list_students(&creds, &course, None)
            .await
            .unwrap()
            .len(),
        7
    );

    assert_eq!(h.oauth.revoke(&refresh).await.unwrap(), Revocation::Revoked);
    assert_eq!(
        h.oauth.revoke(&refresh).await.unwrap(),
        Revocation::AlreadyInvalid
    );
    let err = h.oauth.refresh(&refresh).await.unwrap_err();
    assert!(matches!(err, OAuthError::Revoked { .. }), "{err:?}");
    assert!(err.to_string().contains("connect Google Classroom again"));
    assert!(!err.is_retryable());
    // Revocation ends the whole grant: the access token in hand stops working too.
    let by_bearer = h
        .api
        .list_students(&Credentials::Bearer(grant.access_token), &course, None)
        .await
        .unwrap_err();
    assert!(
        matches!(by_bearer, ApiError::TokenExpired { .. }),
        "{by_bearer:?}"
    );

    // Through the API client, with a cache that never saw the token: Revoked, typed.
    let fresh = classroom::ClassroomClient::new(http(), h.oauth.clone());
    let err = fresh
        .list_students(&creds, &course, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Revoked(OAuthError::Revoked { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), "authorization_revoked");
    // Callers queued behind the failed refresh hear the same without asking Google again.
    let refreshes = h.fake.stats().refreshes;
    let again = fresh
        .list_students(&creds, &course, None)
        .await
        .unwrap_err();
    assert!(matches!(again, ApiError::Revoked(_)));
    assert_eq!(h.fake.stats().refreshes, refreshes);
    h.finish();
}

#[tokio::test]
async fn incremental_authorization_adds_scopes_and_prompt_consent_brings_a_new_refresh_token() {
    let h = Harness::start().await;
    let email = h.fake.teacher().email;
    // First consent: a refresh token even without prompt=consent.
    let first = h
        .oauth
        .authorization_url(&AuthorizationRequest::new(scopes::ROSTER).login_hint(&email));
    let back = h.consent_redirect(&first.url).await;
    let cb = OAuthClient::parse_callback(&back, &first.state).unwrap();
    let g1 = h
        .oauth
        .exchange_code(&cb.code, &first.verifier)
        .await
        .unwrap();
    assert!(g1.refresh_token.is_some());
    assert!(!g1.scopes.contains(scopes::COURSEWORK_STUDENTS));

    // Later, coursework: include_granted_scopes keeps the roster scopes; no new refresh
    // token unless consent is forced.
    let second = h
        .oauth
        .authorization_url(&AuthorizationRequest::new(scopes::COURSEWORK).login_hint(&email));
    let back = h.consent_redirect(&second.url).await;
    let cb = OAuthClient::parse_callback(&back, &second.state).unwrap();
    assert!(
        cb.scopes
            .as_ref()
            .unwrap()
            .contains(scopes::ROSTERS_READONLY)
    );
    let g2 = h
        .oauth
        .exchange_code(&cb.code, &second.verifier)
        .await
        .unwrap();
    assert!(g2.scopes.missing(scopes::ROSTER).is_empty());
    assert!(g2.scopes.contains(scopes::COURSEWORK_STUDENTS));
    assert!(g2.refresh_token.is_none());

    let forced = h.connect(&email, scopes::COURSEWORK).await;
    assert!(forced.refresh_token.is_some());
    assert!(forced.scopes.contains(scopes::COURSES_READONLY));
    h.finish();
}

#[tokio::test]
async fn granular_consent_shows_in_the_granted_scopes_and_the_roster() {
    let h = Harness::start().await;
    h.fake
        .set_consent(Consent::Withhold(vec![scopes::PROFILE_EMAILS.to_owned()]));
    let grant = h.connect(&h.fake.teacher().email, scopes::ROSTER).await;
    assert_eq!(
        grant.scopes.missing(scopes::ROSTER),
        vec![scopes::PROFILE_EMAILS]
    );
    let creds = Credentials::Offline(grant.refresh_token.unwrap());
    let course = classroom::CourseId::new(h.fake.algebra_course_id());
    let students = h.api.list_students(&creds, &course, None).await.unwrap();
    assert_eq!(students.len(), 7);
    assert!(
        students
            .iter()
            .all(|s| s.profile.as_ref().unwrap().email_address.is_none())
    );
    h.finish();
}

#[tokio::test]
async fn refusals_on_the_consent_screen_are_typed() {
    let h = Harness::start().await;
    for (consent, expected) in [
        (Consent::Deny, OAuthError::ConsentDenied),
        (Consent::AdminBlocked, OAuthError::AdminPolicyEnforced),
    ] {
        h.fake.set_consent(consent);
        let pending = h
            .oauth
            .authorization_url(&AuthorizationRequest::new(scopes::ROSTER));
        let back = h.consent_redirect(&pending.url).await;
        assert!(back.query_pairs().all(|(k, _)| k != "code"));
        assert_eq!(
            OAuthClient::parse_callback(&back, &pending.state).unwrap_err(),
            expected
        );
    }
    assert!(
        OAuthError::AdminPolicyEnforced
            .to_string()
            .contains("Google Workspace administrator")
    );
    h.finish();
}

#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client() {
    let h = Harness::start().await;
    let grant = h.connect(&h.fake.teacher().email, scopes::ROSTER).await;
    let registration = h.fake.client();
    let wrong = OAuthClient::new(
        http(),
        OAuthConfig {
            client_id: classroom::ClientId::new(registration.client_id.clone()),
            client_secret: ClientSecret::new("GOCSPX-not-the-secret"),
            redirect_uri: registration.redirect_uris[0].clone(),
            endpoints: endpoints(&h.fake),
        },
    );
    let err = wrong
        .refresh(grant.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, OAuthError::InvalidClient { .. }), "{err:?}");
    assert!(!err.to_string().contains("GOCSPX"));
    // The right client still refreshes: a wrong secret does not revoke anything.
    assert!(
        h.oauth
            .refresh(grant.refresh_token.as_ref().unwrap())
            .await
            .is_ok()
    );
    h.finish();
}
