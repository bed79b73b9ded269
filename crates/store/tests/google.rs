//! Google Classroom storage on SQLite and PostgreSQL: the tenant's OAuth client (secret
//! sealed, one tenant per client id), teachers' grants (refresh tokens sealed, revocation,
//! reconnecting), OAuth states (single use, expiry, any instance), linked courses and the
//! courseWork lmsbridge created as grade targets that scores can name; tenants isolated.

use domain::{Actor, PlatformKind};
use store::crypto::MasterKey;
use store::google::{
    GOOGLE_ISSUER, GoogleCourseInput, GradeMode, GrantStatus, NewGoogleClient, NewGoogleCourseWork,
    NewGoogleGrant, NewGoogleOAuthState, SecretString,
};
use store::testing::{TestDatabase, final_score};
use store::{StoreError, now_micros};
use url::Url;

fn client(id: &str, secret: &str) -> NewGoogleClient {
    NewGoogleClient {
        client_id: id.into(),
        client_secret: SecretString::new(secret),
        project_number: Some("123456789012".into()),
        authorization_url: Url::parse("https://accounts.google.com/o/oauth2/v2/auth").unwrap(),
        token_url: Url::parse("https://oauth2.googleapis.com/token").unwrap(),
        certs_url: Url::parse("https://www.googleapis.com/oauth2/v3/certs").unwrap(),
    }
}

fn grant(sub: &str, refresh: Option<&str>) -> NewGoogleGrant {
    NewGoogleGrant {
        google_sub: sub.into(),
        email: Some(format!("{sub}@school.example")),
        name: Some("Ada Lovelace".into()),
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        scopes: vec![
            "openid".into(),
            "https://www.googleapis.com/auth/classroom.courses.readonly".into(),
        ],
        refresh_token: refresh.map(SecretString::new),
    }
}

#[tokio::test]
async fn google_client_grants_states_courses_and_course_work() {
    let master = MasterKey::generate();
    let actor = Actor::system("test");
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let (a, _) = store.create_tenant("A", None, &actor).await.unwrap();
        let (b, _) = store.create_tenant("B", None, &actor).await.unwrap();
        let sa = store.tenant_scope(a.id).await.unwrap();
        let sb = store.tenant_scope(b.id).await.unwrap();
        let ta = store.tenant(&sa);
        let tb = store.tenant(&sb);

        // The client: created once, updated after, secret sealed and opened.
        assert!(ta.google_platform().await.unwrap().is_none());
        let p = ta
            .configure_google_client(
                &client("a.apps.googleusercontent.com", "GOCSPX-one"),
                &master,
                &actor,
            )
            .await
            .unwrap();
        assert_eq!(p.kind, PlatformKind::GoogleClassroom, "{}", db.label);
        assert_eq!(p.issuer, GOOGLE_ISSUER);
        let again = ta
            .configure_google_client(
                &client("a2.apps.googleusercontent.com", "GOCSPX-two"),
                &master,
                &actor,
            )
            .await
            .unwrap();
        assert_eq!(again.id, p.id, "one Google platform per tenant");
        assert_eq!(again.client_id, "a2.apps.googleusercontent.com");
        let c = ta.google_client(p.id, &master).await.unwrap().unwrap();
        assert_eq!(c.client_secret.secret(), "GOCSPX-two");
        assert!(!format!("{c:?}").contains("GOCSPX"), "secrets never print");
        assert!(
            ta.google_client(p.id, &MasterKey::generate())
                .await
                .is_err(),
            "sealed under the master key"
        );
        assert!(matches!(
            tb.configure_google_client(
                &client("a2.apps.googleusercontent.com", "x"),
                &master,
                &actor
            )
            .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            ta.configure_google_client(&client("", "x"), &master, &actor)
                .await,
            Err(StoreError::Invalid(_))
        ));
        // Another tenant cannot read it.
        assert!(tb.google_client(p.id, &master).await.unwrap().is_none());
        assert!(tb.google_platform().await.unwrap().is_none());

        // Grants: the teacher becomes a person; a reconnect without a token keeps the token.
        let g = ta
            .save_google_grant(p.id, &grant("1001", Some("1//refresh-a")), &master, &actor)
            .await
            .unwrap();
        assert_eq!(g.status, GrantStatus::Active);
        assert!(g.has_refresh_token);
        assert!(g.has_scope("openid"));
        assert_eq!(
            ta.google_refresh_token(g.id, &master)
                .await
                .unwrap()
                .unwrap()
                .secret(),
            "1//refresh-a"
        );
        let mut no_token = grant("1001", None);
        no_token
            .scopes
            .push("https://www.googleapis.com/auth/classroom.coursework.students".into());
        let g2 = ta
            .save_google_grant(p.id, &no_token, &master, &actor)
            .await
            .unwrap();
        assert_eq!(g2.id, g.id);
        assert_eq!(g2.scopes.len(), 3);
        assert_eq!(
            ta.google_refresh_token(g.id, &master)
                .await
                .unwrap()
                .unwrap()
                .secret(),
            "1//refresh-a"
        );
        assert_eq!(
            ta.google_grant_for_user(p.id, "1001")
                .await
                .unwrap()
                .unwrap()
                .id,
            g.id
        );
        assert!(tb.google_grant(g.id).await.unwrap().is_none());
        assert!(
            tb.google_refresh_token(g.id, &master)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !tb.mark_google_grant_revoked(g.id, "x", &actor)
                .await
                .unwrap(),
            "another tenant cannot revoke it"
        );

        // A first consent that brought no refresh token cannot send anything: it says why.
        let online = ta
            .save_google_grant(p.id, &grant("2002", None), &master, &actor)
            .await
            .unwrap();
        assert_eq!(online.status, GrantStatus::Revoked);
        assert!(!online.has_refresh_token);
        assert!(online.status_reason.unwrap().contains("no offline access"));

        // OAuth states: single use, bound to the tenant, gone after expiry.
        let state = NewGoogleOAuthState {
            platform_id: p.id,
            state: SecretString::new("state-1"),
            browser_secret: SecretString::new("browser-1"),
            verifier: SecretString::new("verifier-1"),
            scopes: vec!["openid".into()],
            login_hint: Some("ada@school.example".into()),
            expires_at: now_micros() + 600_000_000,
        };
        ta.put_google_oauth_state(&state, &master).await.unwrap();
        let expired = NewGoogleOAuthState {
            state: SecretString::new("state-old"),
            expires_at: now_micros() - 1,
            ..state.clone()
        };
        ta.put_google_oauth_state(&expired, &master).await.unwrap();
        assert!(
            tb.put_google_oauth_state(&state, &master).await.is_err(),
            "another tenant's platform"
        );
        let (scope, taken) = store
            .take_google_oauth_state("state-1", &master)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(scope, sa);
        assert_eq!(taken.verifier.secret(), "verifier-1");
        assert_eq!(taken.browser_hash, store::crypto::sha256_hex(b"browser-1"));
        assert_eq!(taken.login_hint.as_deref(), Some("ada@school.example"));
        assert!(
            store
                .take_google_oauth_state("state-1", &master)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .take_google_oauth_state("state-old", &master)
                .await
                .unwrap()
                .is_none()
        );

        // A linked course becomes a context a roster sync can read.
        let members =
            Url::parse("https://classroom.googleapis.com/v1/courses/555/students").unwrap();
        let course = ta
            .link_google_course(
                p.id,
                g.id,
                &GoogleCourseInput {
                    course_id: "555".into(),
                    name: Some("Algebra 1".into()),
                    section: Some("Period 2".into()),
                    course_state: Some("ACTIVE".into()),
                },
                &members,
                &actor,
            )
            .await
            .unwrap();
        assert_eq!(course.access_state, "ok");
        let source = ta.roster_source(course.context_id).await.unwrap();
        assert_eq!(source.memberships_url.as_ref(), Some(&members));
        assert_eq!(source.platform_context_id, "555");
        assert!(tb.google_course(course.context_id).await.unwrap().is_none());
        ta.set_google_course_access(
            course.context_id,
            "admin_approval_required",
            Some("ask the admin"),
        )
        .await
        .unwrap();
        assert_eq!(
            ta.google_courses(p.id).await.unwrap()[0].access_state,
            "admin_approval_required"
        );

        // courseWork: a grade target scores can name, found again by the worker's lookup.
        let work = ta
            .record_google_course_work(
                p.id,
                &NewGoogleCourseWork {
                    context_id: course.context_id,
                    grant_id: g.id,
                    course_id: "555".into(),
                    course_work_id: "777".into(),
                    title: "Quiz 1".into(),
                    max_points: 20.0,
                    grade_mode: GradeMode::Draft,
                    return_on_grade: false,
                },
                &actor,
            )
            .await
            .unwrap();
        assert_eq!(work.title.as_deref(), Some("Quiz 1"));
        assert_eq!(work.grade_mode, GradeMode::Draft);
        let (scope, found) = store
            .google_course_work_for_delivery(GOOGLE_ISSUER, &again.client_id, "555", "777")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(scope, sa);
        assert_eq!(found, work);
        assert!(
            store
                .google_course_work_for_delivery(GOOGLE_ISSUER, "other", "555", "777")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            tb.google_course_work(work.grade_target_id)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            ta.google_course_works(course.context_id)
                .await
                .unwrap()
                .len(),
            1
        );
        let score = ta
            .enqueue_score(&final_score(work.grade_target_id, g.person_id, 7.0, 10.0))
            .await;
        assert!(score.is_ok(), "{}: {score:?}", db.label);
        assert!(matches!(
            ta.record_google_course_work(
                p.id,
                &NewGoogleCourseWork {
                    context_id: course.context_id,
                    grant_id: g.id,
                    course_id: "556".into(),
                    course_work_id: "777".into(),
                    title: "Wrong course".into(),
                    max_points: 20.0,
                    grade_mode: GradeMode::Draft,
                    return_on_grade: false,
                },
                &actor,
            )
            .await,
            Err(StoreError::NotFound)
        ));

        // Revocation: the token is dropped, the courses say why; a new consent revives it.
        assert!(
            ta.mark_google_grant_revoked(g.id, "Token has been expired or revoked.", &actor)
                .await
                .unwrap()
        );
        assert!(
            !ta.mark_google_grant_revoked(g.id, "again", &actor)
                .await
                .unwrap()
        );
        let revoked = ta.google_grant(g.id).await.unwrap().unwrap();
        assert_eq!(revoked.status, GrantStatus::Revoked);
        assert!(!revoked.has_refresh_token);
        assert!(revoked.status_reason.unwrap().contains("revoked"));
        assert!(
            ta.google_refresh_token(g.id, &master)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            ta.google_course(course.context_id)
                .await
                .unwrap()
                .unwrap()
                .access_state,
            "grant_revoked"
        );
        let still = ta
            .save_google_grant(p.id, &grant("1001", None), &master, &actor)
            .await
            .unwrap();
        assert_eq!(
            still.status,
            GrantStatus::Revoked,
            "no token, still revoked"
        );
        let back = ta
            .save_google_grant(p.id, &grant("1001", Some("1//refresh-b")), &master, &actor)
            .await
            .unwrap();
        assert_eq!(back.status, GrantStatus::Active);
        assert_eq!(back.revoked_at, None);
        assert_eq!(
            ta.google_refresh_token(g.id, &master)
                .await
                .unwrap()
                .unwrap()
                .secret(),
            "1//refresh-b"
        );
        assert_eq!(ta.google_grants(p.id).await.unwrap().len(), 2);
        assert!(tb.google_grants(p.id).await.unwrap().is_empty());

        let reports = store.verify_audit(None).await.unwrap();
        assert!(!reports.is_empty());
        db.cleanup().await;
    }
}
