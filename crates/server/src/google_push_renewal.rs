//! Classroom roster-change notifications: one `COURSE_ROSTER_CHANGES` registration per
//! course, published to the Cloud Pub/Sub topic in settings and created with the course
//! teacher's grant; renewed before its one-week expiry (Classroom extends a registration
//! when the same `registrations.create` is made again); a push for a course queues an
//! incremental roster re-sync of it. Without a topic, linked courses are re-synced on an
//! interval instead.
//!
//! Time comes in as a parameter (`now`, microseconds) so that tests drive renewal by the
//! clock rather than by sleeping.

use crate::App;
use classroom::model::PubSubTopic;
use classroom::{ApiError, CourseId};
use domain::{Actor, PlatformId};
use store::google_addons::PushRegistration;
use store::{SyncKind, TenantScope, now_micros};

/// Renew a registration when it has less than this left (Classroom's last one week).
pub const RENEW_LEAD_MICROS: i64 = 24 * 3600 * 1_000_000;
/// How long one instance owns a claimed renewal before another may retry it.
const RENEW_LEASE_MICROS: i64 = 5 * 60 * 1_000_000;
/// Registrations renewed, or courses registered, per pass.
const BATCH: u32 = 100;
/// A registration without a stated expiry is taken to last Classroom's week.
const WEEK_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// Why a course could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("push notifications are not configured (LMSBRIDGE_GOOGLE_PUBSUB_TOPIC)")]
    NotConfigured,
    #[error("the Pub/Sub topic setting is not projects/<project>/topics/<topic>")]
    BadTopic,
    #[error(
        "the teacher has no active Google grant with the push-notifications scope; they must sign in again"
    )]
    NoGrant,
    #[error("Classroom refused the registration: {0}")]
    Classroom(#[from] ApiError),
    #[error("{0}")]
    Setup(#[from] crate::google::GoogleSetupError),
    #[error("storage failed: {0}")]
    Store(#[from] store::StoreError),
}

/// Creates (or renews) the roster-change registration of `course_id` with the grant of
/// `teacher_sub`, and stores it with its expiry.
pub async fn register_course(
    app: &App,
    scope: &TenantScope,
    platform: PlatformId,
    course_id: &str,
    teacher_sub: &str,
) -> Result<PushRegistration, RegisterError> {
    let topic_name = app
        .settings()
        .google_pubsub_topic
        .as_deref()
        .ok_or(RegisterError::NotConfigured)?;
    let topic = PubSubTopic::new(topic_name).ok_or(RegisterError::BadTopic)?;
    let tenant = app.store().tenant(scope);
    let grant = tenant
        .google_grant_for_user(platform, teacher_sub)
        .await?
        .filter(|g| g.has_scope(classroom::scopes::PUSH_NOTIFICATIONS))
        .ok_or(RegisterError::NoGrant)?;
    let (client, credentials) = app
        .inner()
        .google
        .grant_client(scope, grant.id)
        .await?
        .ok_or(RegisterError::NoGrant)?;
    let registration = client
        .register_roster_changes(&credentials, &CourseId::new(course_id), &topic)
        .await?;
    let expires_at = registration
        .expiry_time
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX))
        .unwrap_or_else(|| now_micros() + WEEK_MICROS);
    let saved = tenant
        .save_push_registration(
            platform,
            course_id,
            teacher_sub,
            topic.as_str(),
            registration.registration_id.as_str(),
            expires_at,
        )
        .await?;
    tracing::info!(course = %course_id, platform = %platform, expires_at, "Classroom roster push registered");
    Ok(saved)
}

/// Registers a course unless a registration with more than the renewal lead left already
/// covers it (attaching the add-on twice to one course registers it once).
pub async fn ensure_course_registered(
    app: &App,
    scope: &TenantScope,
    platform: PlatformId,
    course_id: &str,
    teacher_sub: &str,
) -> Result<Option<PushRegistration>, RegisterError> {
    let live = app
        .store()
        .tenant(scope)
        .push_registration(platform, course_id)
        .await?
        .is_some_and(|r| {
            r.registration_id.is_some() && r.expires_at > now_micros() + RENEW_LEAD_MICROS
        });
    if live {
        return Ok(None);
    }
    register_course(app, scope, platform, course_id, teacher_sub)
        .await
        .map(Some)
}

/// Renews every registration that lapses within [`RENEW_LEAD_MICROS`] of `now`. Returns
/// how many were renewed; failures are kept on the registration and retried after the lease.
pub async fn renew_due(app: &App, now: i64) -> Result<usize, store::StoreError> {
    let due = app
        .store()
        .claim_push_renewals(now + RENEW_LEAD_MICROS, now, RENEW_LEASE_MICROS, BATCH)
        .await?;
    let mut renewed = 0;
    for (scope, reg) in due {
        match register_course(
            app,
            &scope,
            reg.platform_id,
            &reg.course_id,
            &reg.teacher_user_id,
        )
        .await
        {
            Ok(_) => renewed += 1,
            Err(e) => {
                tracing::warn!(course = %reg.course_id, error = %e, "renewing a Classroom roster push registration failed");
                app.store()
                    .tenant(&scope)
                    .note_push_registration_failure(reg.platform_id, &reg.course_id, &e.to_string())
                    .await?;
            }
        }
    }
    Ok(renewed)
}

/// Registers the linked courses that have no registration yet (with the grant that links
/// them), when push is configured.
pub async fn register_linked_courses(app: &App) -> Result<usize, store::StoreError> {
    if app.settings().google_pubsub_topic.is_none() {
        return Ok(0);
    }
    let mut registered = 0;
    for (scope, course) in app
        .store()
        .google_courses_all(i64::from(BATCH) * 10)
        .await?
    {
        let tenant = app.store().tenant(&scope);
        if tenant
            .push_registration(course.platform_id, &course.course_id)
            .await?
            .is_some()
            || course.access_state != "ok"
        {
            continue;
        }
        let Some(grant) = tenant.google_grant(course.grant_id).await? else {
            continue;
        };
        match register_course(
            app,
            &scope,
            course.platform_id,
            &course.course_id,
            &grant.google_sub,
        )
        .await
        {
            Ok(_) => registered += 1,
            Err(RegisterError::NoGrant) => {}
            Err(e) => {
                tracing::warn!(course = %course.course_id, error = %e, "registering a linked course for roster push failed")
            }
        }
        if registered >= BATCH as usize {
            break;
        }
    }
    Ok(registered)
}

/// Queues a roster re-sync of a linked course (a push said its roster changed, or its
/// interval passed). Returns what was done, as recorded on the push event.
pub async fn resync_course(
    app: &App,
    scope: &TenantScope,
    platform: PlatformId,
    course_id: &str,
) -> Result<&'static str, store::StoreError> {
    let tenant = app.store().tenant(scope);
    let Some(course) = tenant
        .google_courses(platform)
        .await?
        .into_iter()
        .find(|c| c.course_id == course_id)
    else {
        return Ok("course_not_linked");
    };
    let first = adapters::course_roster_url(&app.settings().google_classroom_api_url, course_id);
    let queued = tenant
        .queue_roster_sync(
            course.context_id,
            SyncKind::Full,
            &first,
            &Actor::system("google-push"),
        )
        .await?;
    app.inner().rosters.start(scope.clone(), queued.sync.id);
    Ok(if queued.created {
        "resync_queued"
    } else {
        "resync_already_running"
    })
}

/// Re-syncs linked courses not read for the configured interval that no live push
/// registration covers: all of them when push is off, and with push on those whose
/// teacher's grant could not register them (no push scope) or whose registration lapsed.
pub async fn resync_stale_courses(app: &App, now: i64) -> Result<usize, store::StoreError> {
    let interval = app.settings().google_resync_interval_secs;
    if interval == 0 {
        return Ok(0);
    }
    let interval = i64::try_from(interval)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    let push = app.settings().google_pubsub_topic.is_some();
    let mut queued = 0;
    // Oldest first, so a large installation gets through its courses over several passes.
    for (scope, course) in app
        .store()
        .google_courses_all(i64::from(BATCH) * 10)
        .await?
    {
        if now - course.updated_at < interval {
            break;
        }
        if push
            && app
                .store()
                .tenant(&scope)
                .push_registration(course.platform_id, &course.course_id)
                .await?
                .is_some_and(|r| r.expires_at > now)
        {
            continue;
        }
        if resync_course(app, &scope, course.platform_id, &course.course_id).await?
            == "resync_queued"
        {
            queued += 1;
            if queued >= BATCH as usize {
                break;
            }
        }
    }
    Ok(queued)
}

/// One pass of the background work at `now`: renewals, registrations of newly linked
/// courses, and the periodic fallback.
pub async fn tick(app: &App, now: i64) {
    if let Err(e) = renew_due(app, now).await {
        tracing::error!(error = %e, "renewing Classroom push registrations failed");
    }
    if let Err(e) = register_linked_courses(app).await {
        tracing::error!(error = %e, "registering courses for Classroom push failed");
    }
    if let Err(e) = resync_stale_courses(app, now).await {
        tracing::error!(error = %e, "queuing periodic Google roster re-syncs failed");
    }
}
