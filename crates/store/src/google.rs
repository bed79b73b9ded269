//! Google Classroom: a tenant's Google OAuth client, teachers' offline grants, the
//! single-use OAuth states of the connect flow, the courses linked to contexts, and the
//! courseWork lmsbridge created.
//!
//! A tenant's Google OAuth client is a platform row of kind `google_classroom` whose issuer is
//! [`GOOGLE_ISSUER`] and whose `client_id` is the OAuth client id, so `(issuer, client_id)`
//! names one tenant as it does for LTI. The client secret and each teacher's refresh token are
//! sealed with the master key, bound to their row (the grant by platform and Google `sub`, so a
//! reconnect that updates the row keeps it openable). A teacher is a `person` under the same
//! derived id a launch or a roster sync gives a platform user (`launch_batch::person_id` with
//! the Google `sub`). States are stored under their hash and taken with one `DELETE …
//! RETURNING`, so each opens once, on any instance, before its expiry.
//!
//! The names here are stable: the add-ons and push notification code reads grants through
//! [`TenantStore::google_grant_for_user`], [`TenantStore::google_grant`] and
//! [`TenantStore::google_refresh_token`], and the platform through
//! [`TenantStore::google_platform`] and [`TenantStore::google_client`].

use crate::audit::NewAuditEntry;
use crate::crypto::{MasterKey, sha256_hex};
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::launch_batch::{context_id, grade_target_id, person_id};
use crate::tenants::TenantScope;
use crate::{Store, TenantStore, now_micros};
use domain::{Actor, ContextId, GradeTargetId, PersonId, Platform, PlatformId, PlatformKind};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use url::Url;
use uuid::Uuid;

/// The issuer of every Google Classroom platform row: Google's OpenID issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// A secret read back from the store: printed as `[redacted]`, read only through
/// [`SecretString::secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for the one place that must send it.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Identifies one teacher's grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GoogleGrantId(Uuid);

impl GoogleGrantId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for GoogleGrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for GoogleGrantId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What an admin sets for the tenant's Google OAuth client.
#[derive(Debug, Clone)]
pub struct NewGoogleClient {
    /// `….apps.googleusercontent.com`.
    pub client_id: String,
    pub client_secret: SecretString,
    /// The Google Cloud project number (shown in the console); only that project may grade
    /// the courseWork it creates.
    pub project_number: Option<String>,
    /// Google's endpoints as configured, stored on the platform row like an LTI platform's.
    pub authorization_url: Url,
    pub token_url: Url,
    pub certs_url: Url,
}

/// The tenant's Google OAuth client.
#[derive(Debug, Clone)]
pub struct GoogleClient {
    pub platform: Platform,
    pub client_secret: SecretString,
    pub project_number: Option<String>,
    pub updated_at: i64,
}

/// Whether a grant still works.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    /// Google answered `invalid_grant` (revoked, expired, password changed), or an admin
    /// disconnected it: the teacher must connect again.
    Revoked,
}

impl GrantStatus {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }
}

/// A teacher's (or admin's) offline access to Classroom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoogleGrant {
    pub id: GoogleGrantId,
    pub platform_id: PlatformId,
    /// The Google account (`sub`, which is also Classroom's user id).
    pub google_sub: String,
    pub person_id: PersonId,
    pub email: Option<String>,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub status: GrantStatus,
    pub status_reason: Option<String>,
    pub revoked_at: Option<i64>,
    pub has_refresh_token: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl GoogleGrant {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What the OAuth callback learnt.
#[derive(Clone, Debug)]
pub struct NewGoogleGrant {
    pub google_sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// Every scope the grant now carries (with `include_granted_scopes`, all of them).
    pub scopes: Vec<String>,
    /// Present after a consent with `access_type=offline`; without it the stored one is kept.
    pub refresh_token: Option<SecretString>,
}

/// A pending authorization request.
#[derive(Clone, Debug)]
pub struct NewGoogleOAuthState {
    pub platform_id: PlatformId,
    /// The `state` sent to Google; stored as its hash.
    pub state: SecretString,
    /// The secret in the browser's cookie; stored as its hash.
    pub browser_secret: SecretString,
    pub verifier: SecretString,
    pub scopes: Vec<String>,
    pub login_hint: Option<String>,
    pub expires_at: i64,
}

/// A state taken back by the callback (it can never be taken again).
#[derive(Clone, Debug)]
pub struct GoogleOAuthState {
    pub platform_id: PlatformId,
    pub browser_hash: String,
    pub verifier: SecretString,
    pub scopes: Vec<String>,
    pub login_hint: Option<String>,
}

/// A Classroom course as the connect flow or a sync saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleCourseInput {
    pub course_id: String,
    pub name: Option<String>,
    pub section: Option<String>,
    pub course_state: Option<String>,
}

/// A course linked to a context, read with one teacher's grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkedCourse {
    pub context_id: ContextId,
    pub platform_id: PlatformId,
    pub course_id: String,
    pub grant_id: GoogleGrantId,
    pub name: Option<String>,
    pub section: Option<String>,
    pub course_state: Option<String>,
    /// `ok`, or why the course cannot be read: `admin_approval_required`,
    /// `permission_denied`, `grant_revoked`, `not_found`, ...
    pub access_state: String,
    pub access_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which grade a score sets on a Classroom submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradeMode {
    /// `draftGrade`: only the teacher sees it, for review before returning.
    Draft,
    /// `assignedGrade`: the student sees it once the work is returned.
    Assigned,
    /// Both.
    DraftAndAssigned,
}

impl GradeMode {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Assigned => "assigned",
            Self::DraftAndAssigned => "draft_and_assigned",
        }
    }
}

impl FromStr for GradeMode {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "draft" => Ok(Self::Draft),
            "assigned" => Ok(Self::Assigned),
            "draft_and_assigned" => Ok(Self::DraftAndAssigned),
            _ => Err(StoreError::Invalid(
                "grade_mode must be draft, assigned or draft_and_assigned".into(),
            )),
        }
    }
}

/// A courseWork lmsbridge created, to record as a grade target.
#[derive(Clone, Debug)]
pub struct NewGoogleCourseWork {
    pub context_id: ContextId,
    pub grant_id: GoogleGrantId,
    pub course_id: String,
    pub course_work_id: String,
    pub title: String,
    pub max_points: f64,
    pub grade_mode: GradeMode,
    pub return_on_grade: bool,
}

/// A courseWork lmsbridge created, and how scores for it are sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoogleCourseWork {
    pub grade_target_id: GradeTargetId,
    pub platform_id: PlatformId,
    pub context_id: ContextId,
    /// The grant that created it: only its Cloud project may grade it, and its teacher's
    /// token sends the grades.
    pub grant_id: GoogleGrantId,
    pub course_id: String,
    pub course_work_id: String,
    pub title: Option<String>,
    pub max_points: f64,
    pub grade_mode: GradeMode,
    pub return_on_grade: bool,
    pub created_at: i64,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("google {what}"))
}

fn grant_context(platform: PlatformId, sub: &str) -> String {
    format!("google_grant:{platform}:{sub}")
}

fn client_context(platform: PlatformId) -> String {
    format!("google_client:{platform}")
}

fn state_context(state_hash: &str) -> String {
    format!("google_oauth_state:{state_hash}")
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    platform_id: String,
    google_sub: String,
    person_id: String,
    email: Option<String>,
    name: Option<String>,
    scopes: String,
    status: String,
    status_reason: Option<String>,
    revoked_at: Option<i64>,
    has_refresh_token: bool,
    created_at: i64,
    updated_at: i64,
}

const GRANT_COLUMNS: &str = "id, platform_id, google_sub, person_id, email, name, scopes, status, status_reason, revoked_at, \
    (refresh_token_sealed IS NOT NULL) AS has_refresh_token, created_at, updated_at";

impl TryFrom<GrantRow> for GoogleGrant {
    type Error = StoreError;
    fn try_from(r: GrantRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id.parse().map_err(|_| corrupt("grant id"))?,
            platform_id: r.platform_id.parse().map_err(|_| corrupt("platform id"))?,
            google_sub: r.google_sub,
            person_id: r.person_id.parse().map_err(|_| corrupt("person id"))?,
            email: r.email,
            name: r.name,
            scopes: split_scopes(&r.scopes),
            status: match r.status.as_str() {
                "active" => GrantStatus::Active,
                "revoked" => GrantStatus::Revoked,
                _ => return Err(corrupt("grant status")),
            },
            status_reason: r.status_reason,
            revoked_at: r.revoked_at,
            has_refresh_token: r.has_refresh_token,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CourseRow {
    context_id: String,
    platform_id: String,
    course_id: String,
    grant_id: String,
    name: Option<String>,
    section: Option<String>,
    course_state: Option<String>,
    access_state: String,
    access_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const COURSE_COLUMNS: &str = "context_id, platform_id, course_id, grant_id, name, section, course_state, access_state, \
    access_error, created_at, updated_at";

impl TryFrom<CourseRow> for LinkedCourse {
    type Error = StoreError;
    fn try_from(r: CourseRow) -> Result<Self, StoreError> {
        Ok(Self {
            context_id: r.context_id.parse().map_err(|_| corrupt("context id"))?,
            platform_id: r.platform_id.parse().map_err(|_| corrupt("platform id"))?,
            course_id: r.course_id,
            grant_id: r.grant_id.parse().map_err(|_| corrupt("grant id"))?,
            name: r.name,
            section: r.section,
            course_state: r.course_state,
            access_state: r.access_state,
            access_error: r.access_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CourseWorkRow {
    grade_target_id: String,
    platform_id: String,
    context_id: String,
    grant_id: String,
    course_id: String,
    course_work_id: String,
    title: Option<String>,
    max_points: f64,
    grade_mode: String,
    return_on_grade: bool,
    created_at: i64,
}

const COURSE_WORK_COLUMNS: &str = "w.grade_target_id, w.platform_id, w.context_id, w.grant_id, w.course_id, w.course_work_id, \
    g.label AS title, w.max_points, w.grade_mode, w.return_on_grade, w.created_at";

impl TryFrom<CourseWorkRow> for GoogleCourseWork {
    type Error = StoreError;
    fn try_from(r: CourseWorkRow) -> Result<Self, StoreError> {
        Ok(Self {
            grade_target_id: r
                .grade_target_id
                .parse()
                .map_err(|_| corrupt("grade target id"))?,
            platform_id: r.platform_id.parse().map_err(|_| corrupt("platform id"))?,
            context_id: r.context_id.parse().map_err(|_| corrupt("context id"))?,
            grant_id: r.grant_id.parse().map_err(|_| corrupt("grant id"))?,
            course_id: r.course_id,
            course_work_id: r.course_work_id,
            title: r.title,
            max_points: r.max_points,
            grade_mode: r.grade_mode.parse()?,
            return_on_grade: r.return_on_grade,
            created_at: r.created_at,
        })
    }
}

/// The location a Classroom courseWork grade target is stored under (what the passback
/// worker reads back as `ClassroomCourseWork`).
pub fn course_work_location(course_id: &str, course_work_id: &str) -> String {
    format!("{course_id}/{course_work_id}")
}

impl Store {
    /// Takes a pending authorization back by its `state`, once: a second take, or one after
    /// the expiry, finds nothing. Returns the tenant it was started for.
    pub async fn take_google_oauth_state(
        &self,
        state: &str,
        master: &MasterKey,
    ) -> Result<Option<(TenantScope, GoogleOAuthState)>, StoreError> {
        let state_hash = sha256_hex(state.as_bytes());
        type Row = (String, String, String, Vec<u8>, String, Option<String>);
        let row: Option<Row> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "DELETE FROM google_oauth_states WHERE state_hash = $1 AND expires_at > $2 \
                 RETURNING tenant_id, platform_id, browser_hash, verifier_sealed, scopes, login_hint",
            )
            .bind(&state_hash)
            .bind(now_micros())
            .fetch_optional(pool)
            .await?
        });
        let Some((tenant, platform, browser_hash, sealed, scopes, login_hint)) = row else {
            return Ok(None);
        };
        let verifier = master.open(&sealed, &state_context(&state_hash))?;
        let verifier = String::from_utf8(verifier).map_err(|_| corrupt("verifier"))?;
        Ok(Some((
            TenantScope::new(tenant.parse().map_err(|_| corrupt("tenant id"))?),
            GoogleOAuthState {
                platform_id: platform.parse().map_err(|_| corrupt("platform id"))?,
                browser_hash,
                verifier: SecretString(verifier),
                scopes: split_scopes(&scopes),
                login_hint,
            },
        )))
    }

    /// The courseWork a score is for, found by the platform's (issuer, client id) as the
    /// passback worker knows it, with the scope of the tenant that owns it.
    pub async fn google_course_work_for_delivery(
        &self,
        issuer: &str,
        client_id: &str,
        course_id: &str,
        course_work_id: &str,
    ) -> Result<Option<(TenantScope, GoogleCourseWork)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            tenant_id: String,
            #[sqlx(flatten)]
            work: CourseWorkRow,
        }
        let row: Option<Row> = on_db!(&self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT w.tenant_id, {COURSE_WORK_COLUMNS} FROM google_course_work w \
                 JOIN platforms p ON p.id = w.platform_id AND p.tenant_id = w.tenant_id \
                 JOIN grade_targets g ON g.id = w.grade_target_id AND g.tenant_id = w.tenant_id \
                 WHERE p.issuer = $1 AND p.client_id = $2 AND p.kind = 'google_classroom' \
                   AND w.course_id = $3 AND w.course_work_id = $4"
            )))
            .bind(issuer)
            .bind(client_id)
            .bind(course_id)
            .bind(course_work_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(|r| {
            Ok((
                TenantScope::new(r.tenant_id.parse().map_err(|_| corrupt("tenant id"))?),
                GoogleCourseWork::try_from(r.work)?,
            ))
        })
        .transpose()
    }

    /// Every tenant's linked courses, for periodic re-sync.
    pub async fn google_courses_all(
        &self,
        limit: i64,
    ) -> Result<Vec<(TenantScope, LinkedCourse)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            tenant_id: String,
            #[sqlx(flatten)]
            course: CourseRow,
        }
        let rows: Vec<Row> = on_db!(&self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT tenant_id, {COURSE_COLUMNS} FROM google_courses ORDER BY updated_at LIMIT $1"
            )))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok((
                    TenantScope::new(r.tenant_id.parse().map_err(|_| corrupt("tenant id"))?),
                    LinkedCourse::try_from(r.course)?,
                ))
            })
            .collect()
    }
}

impl TenantStore<'_> {
    /// The tenant's Google Classroom platform, if configured.
    pub async fn google_platform(&self) -> Result<Option<Platform>, StoreError> {
        Ok(self
            .list_platforms()
            .await?
            .into_iter()
            .find(|p| p.kind == PlatformKind::GoogleClassroom))
    }

    /// Sets the tenant's Google OAuth client: creates its `google_classroom` platform the
    /// first time, updates client id, secret and project afterwards (one per tenant).
    pub async fn configure_google_client(
        &self,
        new: &NewGoogleClient,
        master: &MasterKey,
        actor: &Actor,
    ) -> Result<Platform, StoreError> {
        let client_id = new.client_id.trim();
        if client_id.is_empty() || new.client_secret.secret().trim().is_empty() {
            return Err(StoreError::Invalid(
                "a Google OAuth client needs a client id and a client secret".into(),
            ));
        }
        if new
            .project_number
            .as_deref()
            .is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(StoreError::Invalid(
                "the Google Cloud project number is digits only".into(),
            ));
        }
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let existing = self.google_platform().await?;
        let platform_id = existing
            .as_ref()
            .map_or_else(PlatformId::generate, |p| p.id);
        let sealed = master.seal(
            new.client_secret.secret().as_bytes(),
            &client_context(platform_id),
        )?;
        let now = now_micros();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "google.client_configured",
            format!("platform:{platform_id}"),
            serde_json::json!({
                "client_id": client_id, "project_number": new.project_number,
                "created": existing.is_none(),
            }),
        );
        let result: Result<(), StoreError> = async {
            on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                if existing.is_some() {
                    sqlx::query(
                        "UPDATE platforms SET client_id = $1, auth_url = $2, token_url = $3, jwks_url = $4 \
                         WHERE id = $5 AND tenant_id = $6",
                    )
                    .bind(client_id)
                    .bind(new.authorization_url.as_str())
                    .bind(new.token_url.as_str())
                    .bind(new.certs_url.as_str())
                    .bind(platform_id.to_string())
                    .bind(&tenant_s)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "INSERT INTO platforms (id, tenant_id, kind, issuer, client_id, auth_url, token_url, jwks_url, created_at) \
                         VALUES ($1, $2, 'google_classroom', $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(platform_id.to_string())
                    .bind(&tenant_s)
                    .bind(GOOGLE_ISSUER)
                    .bind(client_id)
                    .bind(new.authorization_url.as_str())
                    .bind(new.token_url.as_str())
                    .bind(new.certs_url.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO google_clients (platform_id, tenant_id, client_secret_sealed, project_number, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (platform_id) DO UPDATE SET client_secret_sealed = excluded.client_secret_sealed, \
                       project_number = excluded.project_number, updated_at = excluded.updated_at \
                     WHERE google_clients.tenant_id = excluded.tenant_id",
                )
                .bind(platform_id.to_string())
                .bind(&tenant_s)
                .bind(&sealed)
                .bind(&new.project_number)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                audit_append!(tx, &audit);
                tx.commit().await?;
            });
            Ok(())
        }
        .await;
        match result {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(
                    "this Google OAuth client id is already configured for another tenant",
                ));
            }
            other => other?,
        }
        self.platform(platform_id).await
    }

    /// The Google OAuth client of a platform, secret opened.
    pub async fn google_client(
        &self,
        platform: PlatformId,
        master: &MasterKey,
    ) -> Result<Option<GoogleClient>, StoreError> {
        let row: Option<(Vec<u8>, Option<String>, i64)> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT client_secret_sealed, project_number, updated_at FROM google_clients \
                 WHERE platform_id = $1 AND tenant_id = $2",
            )
            .bind(platform.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        let Some((sealed, project_number, updated_at)) = row else {
            return Ok(None);
        };
        let platform = self.platform(platform).await?;
        let secret = master.open(&sealed, &client_context(platform.id))?;
        Ok(Some(GoogleClient {
            platform,
            client_secret: SecretString(
                String::from_utf8(secret).map_err(|_| corrupt("client secret"))?,
            ),
            project_number,
            updated_at,
        }))
    }

    /// Stores a pending authorization request (state and browser secret hashed, verifier
    /// sealed), dropping the tenant's expired ones.
    pub async fn put_google_oauth_state(
        &self,
        new: &NewGoogleOAuthState,
        master: &MasterKey,
    ) -> Result<(), StoreError> {
        self.platform(new.platform_id).await?;
        let state_hash = sha256_hex(new.state.secret().as_bytes());
        let sealed = master.seal(
            new.verifier.secret().as_bytes(),
            &state_context(&state_hash),
        )?;
        let now = now_micros();
        let tenant_s = self.scope.tenant_id().to_string();
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "DELETE FROM google_oauth_states WHERE tenant_id = $1 AND expires_at <= $2",
            )
            .bind(&tenant_s)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO google_oauth_states (state_hash, tenant_id, platform_id, browser_hash, verifier_sealed, scopes, login_hint, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&state_hash)
            .bind(&tenant_s)
            .bind(new.platform_id.to_string())
            .bind(sha256_hex(new.browser_secret.secret().as_bytes()))
            .bind(&sealed)
            .bind(new.scopes.join(" "))
            .bind(&new.login_hint)
            .bind(now)
            .bind(new.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a teacher's grant after consent: the teacher as a person (same derived id as
    /// a roster member with that Google id), the grant active again with the new refresh token
    /// (or the stored one when Google sent none). Audited.
    pub async fn save_google_grant(
        &self,
        platform: PlatformId,
        new: &NewGoogleGrant,
        master: &MasterKey,
        actor: &Actor,
    ) -> Result<GoogleGrant, StoreError> {
        let sub = new.google_sub.trim();
        if sub.is_empty() {
            return Err(StoreError::Invalid(
                "a Google account id is required".into(),
            ));
        }
        let platform_row = self.platform(platform).await?;
        if platform_row.kind != PlatformKind::GoogleClassroom {
            return Err(StoreError::Invalid(
                "this platform is not a Google Classroom platform".into(),
            ));
        }
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let platform_s = platform.to_string();
        let person = person_id(platform, sub);
        let sealed = new
            .refresh_token
            .as_ref()
            .map(|t| master.seal(t.secret().as_bytes(), &grant_context(platform, sub)))
            .transpose()?;
        let now = now_micros();
        let scopes = new.scopes.join(" ");
        let id = GoogleGrantId::generate();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "google.grant_saved",
            format!("person:{person}"),
            serde_json::json!({
                "platform_id": platform_s, "google_sub": sub, "email": new.email,
                "scopes": new.scopes, "refresh_token_received": sealed.is_some(),
            }),
        );
        let row: GrantRow = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO people (id, tenant_id, platform_id, platform_user_id, name, given_name, family_name, email, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                 ON CONFLICT (platform_id, platform_user_id) DO UPDATE SET name = COALESCE(excluded.name, people.name), \
                   given_name = COALESCE(excluded.given_name, people.given_name), \
                   family_name = COALESCE(excluded.family_name, people.family_name), \
                   email = COALESCE(excluded.email, people.email), updated_at = excluded.updated_at \
                 WHERE people.tenant_id = excluded.tenant_id",
            )
            .bind(person.to_string())
            .bind(&tenant_s)
            .bind(&platform_s)
            .bind(sub)
            .bind(&new.name)
            .bind(&new.given_name)
            .bind(&new.family_name)
            .bind(&new.email)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // A new refresh token makes a revoked grant active again; without one, the
            // status stays what it was.
            let row: GrantRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO google_grants (id, tenant_id, platform_id, google_sub, person_id, email, name, scopes, \
                   refresh_token_sealed, status, status_reason, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9 IS NULL THEN 'revoked' ELSE 'active' END, \
                   CASE WHEN $9 IS NULL THEN 'Google granted no offline access (no refresh token); connect again to allow it' END, $10, $10) \
                 ON CONFLICT (platform_id, google_sub) DO UPDATE SET \
                   email = COALESCE(excluded.email, google_grants.email), name = COALESCE(excluded.name, google_grants.name), \
                   scopes = excluded.scopes, \
                   refresh_token_sealed = COALESCE(excluded.refresh_token_sealed, google_grants.refresh_token_sealed), \
                   status = CASE WHEN excluded.refresh_token_sealed IS NULL THEN google_grants.status ELSE 'active' END, \
                   status_reason = CASE WHEN excluded.refresh_token_sealed IS NULL THEN google_grants.status_reason ELSE NULL END, \
                   revoked_at = CASE WHEN excluded.refresh_token_sealed IS NULL THEN google_grants.revoked_at ELSE NULL END, \
                   updated_at = excluded.updated_at \
                 WHERE google_grants.tenant_id = excluded.tenant_id \
                 RETURNING {GRANT_COLUMNS}"
            )))
            .bind(id.to_string())
            .bind(&tenant_s)
            .bind(&platform_s)
            .bind(sub)
            .bind(person.to_string())
            .bind(&new.email)
            .bind(&new.name)
            .bind(&scopes)
            .bind(&sealed)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
            row
        });
        row.try_into()
    }

    /// The grant of one Google account on a platform.
    pub async fn google_grant_for_user(
        &self,
        platform: PlatformId,
        google_sub: &str,
    ) -> Result<Option<GoogleGrant>, StoreError> {
        let row: Option<GrantRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {GRANT_COLUMNS} FROM google_grants WHERE platform_id = $1 AND google_sub = $2 AND tenant_id = $3"
            )))
            .bind(platform.to_string())
            .bind(google_sub)
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(GoogleGrant::try_from).transpose()
    }

    /// One grant by id.
    pub async fn google_grant(&self, id: GoogleGrantId) -> Result<Option<GoogleGrant>, StoreError> {
        let row: Option<GrantRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {GRANT_COLUMNS} FROM google_grants WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(GoogleGrant::try_from).transpose()
    }

    /// Every grant of a platform, newest first (the admin's status view).
    pub async fn google_grants(
        &self,
        platform: PlatformId,
    ) -> Result<Vec<GoogleGrant>, StoreError> {
        let rows: Vec<GrantRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {GRANT_COLUMNS} FROM google_grants WHERE platform_id = $1 AND tenant_id = $2 ORDER BY updated_at DESC"
            )))
            .bind(platform.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(GoogleGrant::try_from).collect()
    }

    /// The refresh token of an active grant, opened. `None` for a revoked grant or one
    /// without a token.
    pub async fn google_refresh_token(
        &self,
        id: GoogleGrantId,
        master: &MasterKey,
    ) -> Result<Option<SecretString>, StoreError> {
        let row: Option<(String, String, String, Option<Vec<u8>>)> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT platform_id, google_sub, status, refresh_token_sealed FROM google_grants WHERE id = $1 AND tenant_id = $2",
            )
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        let Some((platform, sub, status, Some(sealed))) = row else {
            return Ok(None);
        };
        if status != "active" {
            return Ok(None);
        }
        let platform: PlatformId = platform.parse().map_err(|_| corrupt("platform id"))?;
        let token = master.open(&sealed, &grant_context(platform, &sub))?;
        Ok(Some(SecretString(
            String::from_utf8(token).map_err(|_| corrupt("refresh token"))?,
        )))
    }

    /// Marks a grant revoked with the reason shown to the admin (Google's `invalid_grant`,
    /// or a disconnect). Its refresh token is dropped: it will never work again. Returns
    /// false when it was revoked already.
    pub async fn mark_google_grant_revoked(
        &self,
        id: GoogleGrantId,
        reason: &str,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let tenant = self.scope.tenant_id();
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(500)
            .collect();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "google.grant_revoked",
            format!("google_grant:{id}"),
            serde_json::json!({"reason": reason}),
        );
        let now = now_micros();
        Ok(on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "UPDATE google_grants SET status = 'revoked', status_reason = $1, revoked_at = $2, updated_at = $2, \
                   refresh_token_sealed = NULL \
                 WHERE id = $3 AND tenant_id = $4 AND status = 'active'",
            )
            .bind(&reason)
            .bind(now)
            .bind(id.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "UPDATE google_courses SET access_state = 'grant_revoked', access_error = $1, updated_at = $2 \
                     WHERE grant_id = $3 AND tenant_id = $4",
                )
                .bind(&reason)
                .bind(now)
                .bind(id.to_string())
                .bind(tenant.to_string())
                .execute(&mut *tx)
                .await?;
                audit_append!(tx, &audit);
            }
            tx.commit().await?;
            n == 1
        }))
    }

    /// Links a Classroom course to a context (created under the id derived from the course
    /// id, as a launch would), read with `grant`. `memberships_url` is the course's student
    /// list, where a roster sync starts. Linking again updates the names and the grant.
    pub async fn link_google_course(
        &self,
        platform: PlatformId,
        grant: GoogleGrantId,
        course: &GoogleCourseInput,
        memberships_url: &Url,
        actor: &Actor,
    ) -> Result<LinkedCourse, StoreError> {
        if course.course_id.trim().is_empty() || course.course_id.contains('/') {
            return Err(StoreError::Invalid(
                "a Classroom course id is required".into(),
            ));
        }
        let g = self
            .google_grant(grant)
            .await?
            .ok_or(StoreError::NotFound)?;
        if g.platform_id != platform {
            return Err(StoreError::NotFound);
        }
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let context = context_id(platform, &course.course_id);
        let now = now_micros();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "google.course_linked",
            format!("context:{context}"),
            serde_json::json!({"course_id": course.course_id, "grant_id": grant, "name": course.name}),
        );
        let row: CourseRow = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO contexts (id, tenant_id, platform_id, platform_context_id, title, label, memberships_url, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (platform_id, platform_context_id) DO UPDATE SET title = COALESCE(excluded.title, contexts.title), \
                   label = COALESCE(excluded.label, contexts.label), memberships_url = excluded.memberships_url, \
                   updated_at = excluded.updated_at \
                 WHERE contexts.tenant_id = excluded.tenant_id",
            )
            .bind(context.to_string())
            .bind(&tenant_s)
            .bind(platform.to_string())
            .bind(&course.course_id)
            .bind(&course.name)
            .bind(&course.section)
            .bind(memberships_url.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row: CourseRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO google_courses (context_id, tenant_id, platform_id, course_id, grant_id, name, section, course_state, \
                   access_state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ok', $9, $9) \
                 ON CONFLICT (context_id) DO UPDATE SET grant_id = excluded.grant_id, name = excluded.name, \
                   section = excluded.section, course_state = excluded.course_state, access_state = 'ok', \
                   access_error = NULL, updated_at = excluded.updated_at \
                 WHERE google_courses.tenant_id = excluded.tenant_id \
                 RETURNING {COURSE_COLUMNS}"
            )))
            .bind(context.to_string())
            .bind(&tenant_s)
            .bind(platform.to_string())
            .bind(&course.course_id)
            .bind(grant.to_string())
            .bind(&course.name)
            .bind(&course.section)
            .bind(&course.course_state)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
            row
        });
        row.try_into()
    }

    /// The linked courses of a platform.
    pub async fn google_courses(
        &self,
        platform: PlatformId,
    ) -> Result<Vec<LinkedCourse>, StoreError> {
        let rows: Vec<CourseRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COURSE_COLUMNS} FROM google_courses WHERE platform_id = $1 AND tenant_id = $2 ORDER BY name, course_id"
            )))
            .bind(platform.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(LinkedCourse::try_from).collect()
    }

    /// The linked course behind a context, if it is one.
    pub async fn google_course(
        &self,
        context: ContextId,
    ) -> Result<Option<LinkedCourse>, StoreError> {
        let row: Option<CourseRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COURSE_COLUMNS} FROM google_courses WHERE context_id = $1 AND tenant_id = $2"
            )))
            .bind(context.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(LinkedCourse::try_from).transpose()
    }

    /// Records whether a linked course could be read (`ok`, or the reason it could not).
    pub async fn set_google_course_access(
        &self,
        context: ContextId,
        access_state: &str,
        access_error: Option<&str>,
    ) -> Result<(), StoreError> {
        on_db!(self.db, |pool| {
            sqlx::query(
                "UPDATE google_courses SET access_state = $1, access_error = $2, updated_at = $3 \
                 WHERE context_id = $4 AND tenant_id = $5",
            )
            .bind(access_state)
            .bind(access_error)
            .bind(now_micros())
            .bind(context.to_string())
            .bind(self.scope.tenant_id().to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a linked course's enrolments as learnt from Classroom: the roster page writer
    /// records rows as `nrps`, whichever adapter read them. Returns the rows changed.
    pub async fn mark_google_enrollments(&self, context: ContextId) -> Result<u64, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query(
                "UPDATE enrollments SET source = 'classroom' WHERE context_id = $1 AND tenant_id = $2 AND source = 'nrps' \
                 AND EXISTS (SELECT 1 FROM google_courses c WHERE c.context_id = enrollments.context_id AND c.tenant_id = enrollments.tenant_id)",
            )
            .bind(context.to_string())
            .bind(self.scope.tenant_id().to_string())
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Records a courseWork lmsbridge created as a grade target (kind
    /// `classroom_course_work`, under the id derived from its location), with the grant that
    /// grades it and how. Audited.
    pub async fn record_google_course_work(
        &self,
        platform: PlatformId,
        new: &NewGoogleCourseWork,
        actor: &Actor,
    ) -> Result<GoogleCourseWork, StoreError> {
        if !(new.max_points.is_finite() && new.max_points > 0.0) {
            return Err(StoreError::Invalid(
                "max_points must be greater than 0".into(),
            ));
        }
        if new.course_id.contains('/') || new.course_work_id.contains('/') {
            return Err(StoreError::Invalid("Classroom ids contain no '/'".into()));
        }
        let course = self
            .google_course(new.context_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if course.platform_id != platform || course.course_id != new.course_id {
            return Err(StoreError::NotFound);
        }
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let location = course_work_location(&new.course_id, &new.course_work_id);
        let target = grade_target_id(platform, &location);
        let now = now_micros();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "google.course_work_created",
            format!("grade_target:{target}"),
            serde_json::json!({
                "course_id": new.course_id, "course_work_id": new.course_work_id, "title": new.title,
                "max_points": new.max_points, "grade_mode": new.grade_mode,
                "return_on_grade": new.return_on_grade, "grant_id": new.grant_id,
            }),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO grade_targets (id, tenant_id, platform_id, context_id, kind, location, label, score_maximum, \
                   origin, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'classroom_course_work', $5, $6, $7, 'api', $8, $8) \
                 ON CONFLICT (platform_id, location) DO UPDATE SET label = excluded.label, \
                   score_maximum = excluded.score_maximum, updated_at = excluded.updated_at, deleted_at = NULL \
                 WHERE grade_targets.tenant_id = excluded.tenant_id AND grade_targets.context_id = excluded.context_id",
            )
            .bind(target.to_string())
            .bind(&tenant_s)
            .bind(platform.to_string())
            .bind(new.context_id.to_string())
            .bind(&location)
            .bind(&new.title)
            .bind(new.max_points)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO google_course_work (grade_target_id, tenant_id, platform_id, context_id, grant_id, course_id, \
                   course_work_id, max_points, grade_mode, return_on_grade, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (grade_target_id) DO UPDATE SET grant_id = excluded.grant_id, max_points = excluded.max_points, \
                   grade_mode = excluded.grade_mode, return_on_grade = excluded.return_on_grade \
                 WHERE google_course_work.tenant_id = excluded.tenant_id",
            )
            .bind(target.to_string())
            .bind(&tenant_s)
            .bind(platform.to_string())
            .bind(new.context_id.to_string())
            .bind(new.grant_id.to_string())
            .bind(&new.course_id)
            .bind(&new.course_work_id)
            .bind(new.max_points)
            .bind(new.grade_mode.as_str())
            .bind(new.return_on_grade)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        self.google_course_work(target)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// A courseWork lmsbridge created, by its grade target id.
    pub async fn google_course_work(
        &self,
        target: GradeTargetId,
    ) -> Result<Option<GoogleCourseWork>, StoreError> {
        let row: Option<CourseWorkRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COURSE_WORK_COLUMNS} FROM google_course_work w \
                 JOIN grade_targets g ON g.id = w.grade_target_id AND g.tenant_id = w.tenant_id \
                 WHERE w.grade_target_id = $1 AND w.tenant_id = $2"
            )))
            .bind(target.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(GoogleCourseWork::try_from).transpose()
    }

    /// The courseWork lmsbridge created in a linked course.
    pub async fn google_course_works(
        &self,
        context: ContextId,
    ) -> Result<Vec<GoogleCourseWork>, StoreError> {
        let rows: Vec<CourseWorkRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COURSE_WORK_COLUMNS} FROM google_course_work w \
                 JOIN grade_targets g ON g.id = w.grade_target_id AND g.tenant_id = w.tenant_id \
                 WHERE w.context_id = $1 AND w.tenant_id = $2 ORDER BY w.created_at"
            )))
            .bind(context.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(GoogleCourseWork::try_from).collect()
    }
}
