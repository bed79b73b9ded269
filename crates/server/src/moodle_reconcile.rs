//! Reconciliation with a paired Moodle site: what the plugin's events missed (the plugin or
//! lmsbridge was down long enough for its outbox to overflow, or an event was rejected) is
//! read back from the plugin's web service functions and fed through the same path as real
//! events.
//!
//! For each course lmsbridge knows of the site (from events, or contexts launched from its
//! platform) it asks for course completions and activity completions since the last run
//! (an hour of overlap) and for the current enrolments, and makes events of what differs:
//! ids are derived from what they describe (`rc:cc:<course>:<user>:<time>`, …), so a second
//! run, or another instance running the same one, stores nothing twice, and the domain model
//! emits a product webhook only for state it did not have (a completion the real event
//! brings later changes nothing). Made-up events carry sequence 0, so a real event of the
//! same second wins. A course that fails is reported and skipped; the others go on, and the
//! next run starts again from the last fully successful one. No transaction is open while
//! Moodle is asked.

use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use store::crypto::MasterKey;
use store::{
    MoodleEnrolStatus, MoodleEvent, MoodleEventData, MoodleEventName, MoodleEventSource,
    MoodleSiteId, RECONCILED_ENROL, Store, StoreError, TenantScope, now_micros,
};
use url::Url;

/// How far back each run asks beyond the previous run's start, seconds: a completion
/// written while the previous run was reading still gets seen.
const OVERLAP_SECS: i64 = 3600;

/// Events per store call.
const CHUNK: usize = 500;

/// Why reconciliation of a site or a course failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    #[error("the site is not paired with this tenant, or has no web service token")]
    NoToken,
    #[error("Moodle could not be reached: {0}")]
    Http(String),
    #[error("Moodle answered {status} to {function}")]
    Status { function: &'static str, status: u16 },
    #[error("Moodle refused {function}: {code}")]
    Moodle {
        function: &'static str,
        code: String,
    },
    #[error("Moodle's answer to {0} is not what the plugin returns")]
    Shape(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one course's reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CourseReport {
    pub course_id: i64,
    /// Events made from Moodle's answers (new or already stored).
    pub events: usize,
    pub accepted: usize,
    pub duplicates: usize,
    /// Why the course was skipped, if it was.
    pub error: Option<String>,
}

/// What a run over one site did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub site_id: MoodleSiteId,
    pub since: i64,
    pub courses: Vec<CourseReport>,
}

/// Reads the plugin's web service functions and feeds what they show into the store.
#[derive(Debug, Clone)]
pub struct MoodleReconciler {
    store: Store,
    http: reqwest::Client,
    master: MasterKey,
}

#[derive(Debug, Clone)]
struct Ws {
    endpoint: Url,
    token: String,
}

fn field(v: &Value, name: &str) -> Option<i64> {
    match v.get(name)? {
        Value::String(s) => s.parse().ok(),
        x => x.as_i64(),
    }
}

impl MoodleReconciler {
    pub fn new(store: Store, http: reqwest::Client, master: MasterKey) -> Self {
        Self {
            store,
            http,
            master,
        }
    }

    /// Reconciles every site whose turn has come (claimed with a lease, so instances do not
    /// run the same site at once). Errors are logged per site.
    pub async fn run_due(&self, interval_secs: i64) -> Result<usize, StoreError> {
        if interval_secs <= 0 {
            return Ok(0);
        }
        let due = self
            .store
            .claim_moodle_reconciliations(interval_secs, 15 * 60, 20)
            .await?;
        let n = due.len();
        for (scope, site) in due {
            match self.reconcile_site(&scope, &site).await {
                Ok(report) => {
                    let failed = report.courses.iter().filter(|c| c.error.is_some()).count();
                    let accepted: usize = report.courses.iter().map(|c| c.accepted).sum();
                    tracing::info!(
                        site = site.as_str(),
                        courses = report.courses.len(),
                        failed,
                        accepted,
                        "moodle site reconciled"
                    );
                }
                Err(e) => {
                    tracing::warn!(site = site.as_str(), error = %e, "moodle reconciliation failed");
                    let _ = self
                        .store
                        .tenant(&scope)
                        .finish_moodle_reconcile(&site, None)
                        .await;
                }
            }
        }
        Ok(n)
    }

    /// Reconciles one site now, course by course.
    pub async fn reconcile_site(
        &self,
        scope: &TenantScope,
        site: &MoodleSiteId,
    ) -> Result<ReconcileReport, ReconcileError> {
        let t = self.store.tenant(scope);
        let target = t
            .moodle_reconcile_target(site, &self.master)
            .await?
            .ok_or(ReconcileError::NoToken)?;
        let mut endpoint = Url::parse(&format!("{}/", target.site.site_url))
            .map_err(|_| ReconcileError::Shape("the site URL"))?;
        endpoint = endpoint
            .join("webservice/rest/server.php")
            .map_err(|_| ReconcileError::Shape("the site URL"))?;
        let ws = Ws {
            endpoint,
            token: target.ws_token.secret().to_owned(),
        };
        let started = now_micros();
        let since = target
            .site
            .last_reconciled_at
            .map_or(0, |t| (t / 1_000_000 - OVERLAP_SECS).max(0));
        let mut courses = Vec::with_capacity(target.courses.len());
        for course in &target.courses {
            let mut report = CourseReport {
                course_id: *course,
                ..CourseReport::default()
            };
            match self
                .reconcile_course(scope, site, &ws, *course, since)
                .await
            {
                Ok((events, accepted, duplicates)) => {
                    report.events = events;
                    report.accepted = accepted;
                    report.duplicates = duplicates;
                }
                Err(e) => {
                    tracing::warn!(site = site.as_str(), course, error = %e, "reconciling a moodle course failed");
                    report.error = Some(e.to_string());
                }
            }
            courses.push(report);
        }
        let all_ok = courses.iter().all(|c| c.error.is_none());
        t.finish_moodle_reconcile(site, all_ok.then_some(started))
            .await?;
        Ok(ReconcileReport {
            site_id: site.clone(),
            since,
            courses,
        })
    }

    async fn call(
        &self,
        ws: &Ws,
        function: &'static str,
        params: &[(&str, String)],
    ) -> Result<Value, ReconcileError> {
        let mut form: Vec<(&str, String)> = vec![
            ("wstoken", ws.token.clone()),
            ("wsfunction", function.to_owned()),
            ("moodlewsrestformat", "json".to_owned()),
        ];
        form.extend(params.iter().cloned());
        // The token travels in the body, so neither errors nor logs that show the URL carry it.
        let response = self
            .http
            .post(ws.endpoint.clone())
            .form(&form)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| ReconcileError::Http(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ReconcileError::Status {
                function,
                status: status.as_u16(),
            });
        }
        let body: Value = response
            .json()
            .await
            .map_err(|_| ReconcileError::Shape(function))?;
        // Moodle reports failures with 200 and an exception object.
        if body.get("exception").is_some() || body.get("errorcode").is_some() {
            let code = body
                .get("errorcode")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .chars()
                .take(100)
                .collect();
            return Err(ReconcileError::Moodle { function, code });
        }
        Ok(body)
    }

    async fn reconcile_course(
        &self,
        scope: &TenantScope,
        site: &MoodleSiteId,
        ws: &Ws,
        course: i64,
        since: i64,
    ) -> Result<(usize, usize, usize), ReconcileError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let by_course = [
            ("courseid", course.to_string()),
            ("since", since.to_string()),
        ];
        let mut events = Vec::new();

        let f = "local_lmsbridge_get_course_completions";
        let completions = self.call(ws, f, &by_course).await?;
        for c in completions
            .get("completions")
            .and_then(Value::as_array)
            .ok_or(ReconcileError::Shape(f))?
        {
            let (Some(user), Some(at)) = (field(c, "user_id"), field(c, "timecompleted")) else {
                return Err(ReconcileError::Shape(f));
            };
            if user <= 0 || at <= 0 {
                continue;
            }
            events.push(made_up(
                format!("rc:cc:{course}:{user}:{at}"),
                MoodleEventName::CourseCompleted,
                at,
                course,
                user,
                None,
                MoodleEventData::CourseCompleted { time_completed: at },
                c.clone(),
            ));
        }

        let f = "local_lmsbridge_get_activity_completions";
        let activities = self.call(ws, f, &by_course).await?;
        for a in activities
            .get("completions")
            .and_then(Value::as_array)
            .ok_or(ReconcileError::Shape(f))?
        {
            let (Some(user), Some(cm), Some(state)) = (
                field(a, "user_id"),
                field(a, "cm_id"),
                field(a, "completionstate"),
            ) else {
                return Err(ReconcileError::Shape(f));
            };
            let at = field(a, "timemodified").unwrap_or(0);
            if user <= 0 || cm <= 0 || at <= 0 || !(0..=3).contains(&state) {
                continue;
            }
            let modname = a
                .get("modname")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            events.push(made_up(
                format!("rc:ac:{course}:{cm}:{user}:{state}:{at}"),
                MoodleEventName::ModuleCompletionUpdated,
                at,
                course,
                user,
                Some(cm),
                MoodleEventData::ActivityCompletion {
                    completion_state: state,
                    modname,
                    instance_id: field(a, "instance_id"),
                    time_modified: Some(at),
                },
                a.clone(),
            ));
        }

        let f = "local_lmsbridge_get_enrolments";
        let enrolments = self
            .call(ws, f, &[("courseid", course.to_string())])
            .await?;
        let listed = enrolments
            .get("enrolments")
            .and_then(Value::as_array)
            .ok_or(ReconcileError::Shape(f))?;
        let t = self.store.tenant(scope);
        let mut known: BTreeMap<i64, Vec<store::KnownMoodleEnrolment>> = BTreeMap::new();
        for k in t.known_moodle_enrolments(site, course).await? {
            known.entry(k.user_id).or_default().push(k);
        }
        events
            .extend(enrolment_events(course, now, listed, &known).ok_or(ReconcileError::Shape(f))?);

        let total = events.len();
        let (mut accepted, mut duplicates) = (0, 0);
        for chunk in events.chunks(CHUNK) {
            let out = t.record_moodle_events(site, chunk).await?;
            accepted += out.accepted.len();
            duplicates += out.duplicates.len();
        }
        Ok((total, accepted, duplicates))
    }
}

/// One enrolment as Moodle lists it now.
struct Listed {
    user: i64,
    /// The enrolment method, when the plugin says (it does; the wire contract does not
    /// promise it).
    enrol: Option<String>,
    active: bool,
    roles: Vec<String>,
    raw: Value,
}

fn listed(entries: &[Value]) -> Option<Vec<Listed>> {
    entries
        .iter()
        .map(|e| {
            let user = field(e, "user_id")?;
            let status = field(e, "status")?;
            let roles = e
                .get("roles")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Some(Listed {
                user,
                enrol: e
                    .get("enrol")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty() && *m != RECONCILED_ENROL)
                    .map(str::to_owned),
                active: status == 0,
                roles,
                raw: e.clone(),
            })
        })
        .filter(|l| l.as_ref().is_none_or(|l| l.user > 0))
        .collect()
}

/// The events that bring the enrolments the events built (`known`, per user) to what Moodle
/// lists now. With methods listed, each method is compared; without, a user's methods are
/// compared as a whole and what Moodle shows is kept under the method `reconciled`. `None`
/// when the answer is not the plugin's shape.
fn enrolment_events(
    course: i64,
    now: i64,
    entries: &[Value],
    known: &BTreeMap<i64, Vec<store::KnownMoodleEnrolment>>,
) -> Option<Vec<MoodleEvent>> {
    let listed = listed(entries)?;
    let mut events = Vec::new();
    let enrolment = |id: String, name, user, enrol: &str, status, l: Option<&Listed>| {
        made_up(
            id,
            name,
            now,
            course,
            user,
            None,
            MoodleEventData::Enrolment {
                enrol: enrol.to_owned(),
                status,
                time_start: l.and_then(|l| field(&l.raw, "timestart")),
                time_end: l.and_then(|l| field(&l.raw, "timeend")),
                roles: l.map(|l| l.roles.clone()).unwrap_or_default(),
            },
            l.map_or_else(
                || json!({"reconciled": "not listed by Moodle"}),
                |l| json!({"reconciled": l.raw}),
            ),
        )
    };
    let status_of = |active: bool| {
        if active {
            MoodleEnrolStatus::Active
        } else {
            MoodleEnrolStatus::Suspended
        }
    };
    let by_method = !listed.is_empty() && listed.iter().all(|l| l.enrol.is_some());
    let mut still_listed: HashMap<(i64, String), ()> = HashMap::new();
    if by_method {
        for l in &listed {
            let enrol = l.enrol.clone().unwrap_or_default();
            still_listed.insert((l.user, enrol.clone()), ());
            let mine = known
                .get(&l.user)
                .and_then(|ms| ms.iter().find(|m| m.enrol == enrol));
            let status = status_of(l.active);
            if mine.is_some_and(|m| m.status == status.as_str()) {
                continue;
            }
            let stamp = mine.map_or(0, |m| m.state_at);
            events.push(enrolment(
                format!(
                    "rc:em:{course}:{}:{enrol}:{}:{stamp}",
                    l.user,
                    status.as_str()
                ),
                MoodleEventName::UserEnrolmentUpdated,
                l.user,
                &enrol,
                status,
                Some(l),
            ));
        }
    } else {
        // Moodle may list a user once per method: active through any active one.
        let mut users: BTreeMap<i64, &Listed> = BTreeMap::new();
        for l in &listed {
            let e = users.entry(l.user).or_insert(l);
            if l.active && !e.active {
                *e = l;
            }
        }
        for (user, l) in &users {
            let methods = known.get(user).map(Vec::as_slice).unwrap_or_default();
            for m in methods {
                still_listed.insert((*user, m.enrol.clone()), ());
            }
            let known_active = methods.iter().any(|m| m.status == "active");
            if methods.is_empty() || (l.active && !known_active) {
                let status = status_of(l.active);
                let stamp: i64 = methods.iter().map(|m| m.state_at).max().unwrap_or(0);
                events.push(enrolment(
                    format!("rc:en:{course}:{user}:{}:{stamp}", status.as_str()),
                    MoodleEventName::UserEnrolmentCreated,
                    *user,
                    RECONCILED_ENROL,
                    status,
                    Some(l),
                ));
            } else if !l.active && known_active {
                for m in methods.iter().filter(|m| m.status == "active") {
                    events.push(enrolment(
                        format!("rc:es:{course}:{user}:{}:{}", m.enrol, m.state_at),
                        MoodleEventName::UserEnrolmentUpdated,
                        *user,
                        &m.enrol,
                        MoodleEnrolStatus::Suspended,
                        None,
                    ));
                }
            }
        }
    }
    // Known enrolments Moodle no longer lists were deleted while events were lost.
    for (user, methods) in known {
        for m in methods {
            if still_listed.contains_key(&(*user, m.enrol.clone())) {
                continue;
            }
            events.push(enrolment(
                format!("rc:ed:{course}:{user}:{}:{}", m.enrol, m.state_at),
                MoodleEventName::UserEnrolmentDeleted,
                *user,
                &m.enrol,
                MoodleEnrolStatus::Deleted,
                None,
            ));
        }
    }
    Some(events)
}

#[allow(clippy::too_many_arguments)]
fn made_up(
    id: String,
    name: MoodleEventName,
    occurred_at: i64,
    course: i64,
    user: i64,
    cm: Option<i64>,
    data: MoodleEventData,
    payload: Value,
) -> MoodleEvent {
    MoodleEvent {
        id,
        seq: 0,
        name,
        occurred_at,
        course_id: Some(course),
        user_id: Some(user),
        cm_id: cm,
        data,
        payload,
        source: MoodleEventSource::Reconcile,
    }
}

/// How long received events are kept, days. Their ids deduplicate retries and replays, which
/// come within minutes (a replay outside the timestamp window is refused) or, from a plugin
/// that could not reach lmsbridge, within days; what they built stays.
pub const EVENT_RETENTION_DAYS: i64 = 90;

/// Runs due reconciliations once a minute (none when the interval is 0), and forgets events
/// older than [`EVENT_RETENTION_DAYS`] once an hour, until `shutdown`. Each site's turn is
/// decided by its last run in the database, so every instance may run this.
pub async fn run_periodically(
    reconciler: MoodleReconciler,
    interval_secs: i64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut swept_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if interval_secs > 0
            && let Err(e) = reconciler.run_due(interval_secs).await
        {
            tracing::error!(error = %e, "claiming moodle reconciliations failed");
        }
        if swept_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            swept_at = Some(tokio::time::Instant::now());
            let before = now_micros() - EVENT_RETENTION_DAYS * 86_400 * 1_000_000;
            match reconciler.store.sweep_moodle_events(before, 10_000).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "forgot old moodle events"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "sweeping old moodle events failed"),
            }
        }
    }
}
