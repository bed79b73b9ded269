//! The demo's Google Classroom step: a simulated Google Classroom on a loopback port of its
//! own (OAuth endpoints and the Classroom API, checked against Google's discovery document),
//! every Google endpoint setting pointed at it, and, once lmsbridge serves, the whole flow
//! through the product API as a product would drive it: a simulated teacher connects their
//! Google account, picks Algebra 1, its roster appears through the API, lmsbridge creates a
//! courseWork, the product grades a student with `POST /api/v1/scores`, and the simulated
//! Classroom holds the grade.

use anyhow::Context;
use serde_json::{Value, json};
use server::Settings;
use std::sync::Arc;
use std::time::Duration;
use testkit::classroom::{ClassroomConfig, OAuthClientRegistration};
use testkit::{SimulatedClassroom, SpawnedClassroom};
use tokio::sync::watch;
use url::Url;

/// What the Google step did, for the demo's output and its test.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleOutcome {
    pub teacher_email: String,
    pub course_name: String,
    pub members: usize,
    pub student_name: String,
    pub course_work_id: String,
    /// The grade the simulated Classroom holds on the student's submission.
    pub assigned_grade: Option<f64>,
    pub max_points: f64,
}

/// The simulated Classroom and the step's progress.
#[derive(Debug, Clone)]
pub struct GoogleDemo {
    pub classroom: SimulatedClassroom,
    /// Serves the simulated Classroom while the demo runs.
    _server: Arc<SpawnedClassroom>,
    outcome: watch::Sender<Option<Result<GoogleOutcome, String>>>,
}

impl GoogleDemo {
    /// Starts the simulated Classroom on a free loopback port and points the settings'
    /// Google endpoints at it. Call before building the app.
    pub async fn prepare(settings: &mut Settings) -> anyhow::Result<Self> {
        let redirect = settings.public("google/oauth/callback");
        let (classroom, server) = SimulatedClassroom::spawn_with(|c| ClassroomConfig {
            client: OAuthClientRegistration::new("lmsbridge-demo", redirect),
            ..c
        })
        .await
        .context("starting the simulated Google Classroom")?;
        let urls = classroom.urls();
        settings.google_authorization_url = urls.authorization;
        settings.google_token_url = urls.token;
        settings.google_revocation_url = urls.revocation;
        settings.google_userinfo_url = urls.userinfo;
        settings.google_classroom_api_url = urls.api_base;
        Ok(Self {
            classroom,
            _server: Arc::new(server),
            outcome: watch::Sender::new(None),
        })
    }

    /// Configures the tenant's Google OAuth client with the simulated project's client.
    pub async fn configure(
        &self,
        app: &server::App,
        scope: &store::TenantScope,
    ) -> anyhow::Result<()> {
        let client = self.classroom.client();
        let urls = self.classroom.urls();
        app.store()
            .tenant(scope)
            .configure_google_client(
                &store::google::NewGoogleClient {
                    client_id: client.client_id,
                    client_secret: store::google::SecretString::new(client.client_secret),
                    project_number: Some("100000000001".into()),
                    authorization_url: urls.authorization,
                    token_url: urls.token,
                    certs_url: urls.userinfo,
                },
                app.google().master(),
                &domain::Actor::system("demo"),
            )
            .await?;
        Ok(())
    }

    /// Runs the flow once lmsbridge answers at `base`; prints what happened.
    pub fn run_in_background(&self, base: Url, api_key: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.run(&base, &api_key).await;
            match &result {
                Ok(o) => {
                    println!(
                        "  Google Classroom: {} connected, {} synced ({} members); {} graded on a courseWork \
                         lmsbridge created: the simulated Classroom holds assignedGrade {} of {}.",
                        o.teacher_email,
                        o.course_name,
                        o.members,
                        o.student_name,
                        o.assigned_grade
                            .map_or_else(|| "none".to_owned(), |g| g.to_string()),
                        o.max_points
                    );
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "the demo's Google Classroom step failed");
                }
            }
            this.outcome
                .send_replace(Some(result.map_err(|e| format!("{e:#}"))));
        });
    }

    /// Waits for the step to finish (or `within` to pass).
    pub async fn outcome(&self, within: Duration) -> Option<Result<GoogleOutcome, String>> {
        let mut rx = self.outcome.subscribe();
        let done = tokio::time::timeout(within, rx.wait_for(Option::is_some)).await;
        match done {
            Ok(Ok(v)) => v.clone(),
            _ => None,
        }
    }

    async fn run(&self, base: &Url, api_key: &str) -> anyhow::Result<GoogleOutcome> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let api = Api {
            http: &http,
            base,
            key: api_key,
        };
        // Wait for lmsbridge to serve.
        for _ in 0..100 {
            if http.get(base.join("health")?).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let teacher = self.classroom.teacher();
        let link = api
            .call(
                reqwest::Method::POST,
                "api/v1/google/connect-links",
                Some(json!({"features": ["roster", "coursework"], "login_hint": teacher.email})),
                201,
            )
            .await?;
        let link = link["url"].as_str().context("a connect link")?;
        // The teacher opens the link; the simulated Google signs them in and consents.
        let page = testkit::Browser::new().get(link).await?;
        anyhow::ensure!(
            page.status == 200 && page.body.contains("Google Classroom connected"),
            "the teacher could not connect: {}",
            page.status
        );
        let status = api
            .call(reqwest::Method::GET, "api/v1/google", None, 200)
            .await?;
        let grant = status["grants"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["google_sub"] == teacher.id.as_str()))
            .context("the teacher's grant")?
            .clone();
        let grant_id = grant["id"].as_str().context("grant id")?;
        let courses = api
            .call(
                reqwest::Method::GET,
                &format!("api/v1/google/courses?grant_id={grant_id}"),
                None,
                200,
            )
            .await?;
        let algebra = self.classroom.algebra_course_id();
        let course = courses["courses"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["course_id"] == algebra.as_str()))
            .context("Algebra 1 among the teacher's courses")?
            .clone();
        let linked = api
            .call(
                reqwest::Method::POST,
                "api/v1/google/courses",
                Some(json!({"grant_id": grant_id, "course_id": algebra})),
                201,
            )
            .await?;
        let context = linked["course"]["context_id"]
            .as_str()
            .context("context id")?
            .to_owned();
        let sync_id = linked["sync"]["id"].as_str().context("sync id")?.to_owned();
        let mut sync = Value::Null;
        for _ in 0..300 {
            sync = api
                .call(
                    reqwest::Method::GET,
                    &format!("api/v1/roster-syncs/{sync_id}"),
                    None,
                    200,
                )
                .await?;
            if sync["state"] == "done" || sync["state"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(
            sync["state"] == "done",
            "the roster sync did not finish: {sync}"
        );
        let members = api
            .call(
                reqwest::Method::GET,
                &format!("api/v1/contexts/{context}/members?limit=200"),
                None,
                200,
            )
            .await?;
        let members = members["members"].as_array().cloned().unwrap_or_default();
        let student = members
            .iter()
            .find(|m| {
                m["roles"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == "learner"))
            })
            .context("a student in the roster")?
            .clone();
        let max_points = 10.0;
        let work = api
            .call(
                reqwest::Method::POST,
                &format!("api/v1/contexts/{context}/google/course-work"),
                Some(json!({
                    "title": "lmsbridge demo quiz", "max_points": 10,
                    "grade_mode": "assigned", "return_on_grade": true,
                })),
                201,
            )
            .await?;
        let course_work_id = work["course_work_id"]
            .as_str()
            .context("courseWork id")?
            .to_owned();
        let score = api
            .call(
                reqwest::Method::POST,
                "api/v1/scores",
                Some(json!({
                    "grade_target_id": work["grade_target_id"], "person_id": student["person_id"],
                    "score_given": 8, "score_maximum": 10,
                    "activity_progress": "Completed", "grading_progress": "FullyGraded",
                    "actor": {"kind": "ai_grader", "id": "demo-grader"},
                })),
                202,
            )
            .await?;
        let score_id = score["id"].as_str().context("score id")?.to_owned();
        let mut state = Value::Null;
        for _ in 0..300 {
            state = api
                .call(
                    reqwest::Method::GET,
                    &format!("api/v1/scores/{score_id}"),
                    None,
                    200,
                )
                .await?["status"]
                .clone();
            if state["state"] == "delivered" || state["state"] == "dead" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(
            state["state"] == "delivered",
            "the grade was not delivered: {state}"
        );
        let student_id = student["platform_user_id"].as_str().unwrap_or_default();
        let assigned_grade = self
            .classroom
            .submissions(&course_work_id)
            .into_iter()
            .find(|s| s.user_id == student_id)
            .and_then(|s| s.assigned_grade);
        Ok(GoogleOutcome {
            teacher_email: teacher.email,
            course_name: course["name"].as_str().unwrap_or("the course").to_owned(),
            members: members.len(),
            student_name: student["name"].as_str().unwrap_or("a student").to_owned(),
            course_work_id,
            assigned_grade,
            max_points,
        })
    }
}

struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a Url,
    key: &'a str,
}

impl Api<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, self.base.join(path)?)
            .bearer_auth(self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status == want, "{path} answered {status}: {v}");
        Ok(v)
    }
}
