//! The load itself: many browsers doing OIDC login initiation (timed), the platform signing
//! one id_token per pending login (untimed), then the browsers posting the id_token with
//! their cookies (timed). Work goes in rounds so tokens stay fresh and every run is bounded
//! in launches, in timed seconds and in wall-clock time.

use crate::platform::{self, Population, Registration, is_loopback};
use crate::stats::{CpuProbe, CpuTotals, CpuUse, Latency};
use lti::ToolKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use url::Url;

/// The tool under test, which decides what a successful launch answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// 303 to the tenant's product URL with `?code=` (the one-time handoff code).
    Lmsbridge,
    /// The bench Flask app: 302 to the product URL with `?launch_id=` (cached launch data).
    Pylti1p3,
    /// ltijs: 302 back to the app route with `?ltik=` (its signed launch token).
    Ltijs,
}

impl Tool {
    /// The query parameter that carries the tool's handoff in a successful answer.
    pub fn handoff_param(self) -> &'static str {
        match self {
            Self::Lmsbridge => "code",
            Self::Pylti1p3 => "launch_id",
            Self::Ltijs => "ltik",
        }
    }
}

/// Where the tool is and what it must answer.
#[derive(Debug, Clone)]
pub struct Target {
    pub tool: Tool,
    pub login_url: Url,
    pub target_link_uri: Url,
    /// When set, a successful launch must redirect under this URL.
    pub product_url: Option<Url>,
}

/// How much load to send.
#[derive(Debug, Clone)]
pub struct Plan {
    pub launches: usize,
    pub concurrency: usize,
    /// Stop starting rounds once the timed phases have taken this long.
    pub budget: Duration,
    /// Stop taking new requests at this instant, whatever else says.
    pub deadline: Instant,
    pub first_batch: usize,
    pub max_batch: usize,
    /// Launch numbers start here, so consecutive runs continue the user sequence.
    pub first_launch: usize,
}

/// Failures counted by kind, with the first answer seen for each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Errors {
    pub counts: BTreeMap<String, u64>,
    pub samples: BTreeMap<String, String>,
}

impl Errors {
    fn note(&mut self, kind: String, sample: String) {
        *self.counts.entry(kind.clone()).or_default() += 1;
        self.samples.entry(kind).or_insert(sample);
    }

    fn merge(&mut self, other: Errors) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for (k, v) in other.samples {
            self.samples.entry(k).or_insert(v);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// The outcome of one run at one concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchRun {
    pub label: String,
    pub tool: Tool,
    pub concurrency: usize,
    pub launches_ok: u64,
    pub logins_attempted: u64,
    pub logins_ok: u64,
    pub launches_attempted: u64,
    pub rounds: usize,
    pub login_secs: f64,
    pub launch_secs: f64,
    pub sign_secs: f64,
    /// Successful launches / (login seconds + launch seconds).
    pub launches_per_sec: f64,
    pub login: Latency,
    pub launch: Latency,
    /// Login plus launch of the same browser.
    pub combined: Latency,
    pub errors: Errors,
    /// Per successful launch, over the timed phases.
    pub cpu: CpuUse,
    pub ceiling: Option<Ceiling>,
}

/// The generator against a trivial endpoint: its own ceiling.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ceiling {
    pub url: String,
    pub concurrency: usize,
    pub requests_ok: u64,
    pub errors: Errors,
    pub secs: f64,
    pub requests_per_sec: f64,
    pub latency: Latency,
    /// Per request.
    pub cpu: CpuUse,
}

/// A browser between login and launch.
#[derive(Debug)]
struct Pending {
    launch: usize,
    cookie: String,
    state: String,
    nonce: String,
    redirect_uri: Url,
    login_us: u32,
}

#[derive(Debug)]
struct Signed {
    pending: Pending,
    /// The form the browser posts (`id_token` and `state`), encoded before the timed phase:
    /// the same bytes a browser sends, without the generator encoding them while it measures.
    form: axum::body::Bytes,
}

/// Everything a phase's workers share.
struct Shared {
    client: reqwest::Client,
    target: Target,
    reg: Registration,
    population: Population,
    deadline: Instant,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// A short, printable excerpt of an error answer: lmsbridge's failed-check name when the
/// page has one, else the first characters.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let marker = "Check that failed</dt><dd>";
    if let Some(i) = text.find(marker) {
        let rest = &text[i + marker.len()..];
        return rest[..rest.find('<').unwrap_or(rest.len())].to_owned();
    }
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(240)
        .collect()
}

fn transport_kind(phase: &str, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("{phase}_timeout")
    } else if e.is_connect() {
        format!("{phase}_connect")
    } else {
        format!("{phase}_transport")
    }
}

/// The query string of a URL as it came in a `Location` header, without parsing the rest.
fn query_of(location: &str) -> &str {
    let query = location.split_once('?').map_or("", |(_, q)| q);
    query.split_once('#').map_or(query, |(q, _)| q)
}

/// The value of one query parameter of a `Location`, decoded.
fn query_value(location: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query_of(location).as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn login_once(s: &Shared, launch: usize) -> Result<Pending, (String, String)> {
    let user = s.population.user(launch);
    let mut url = s.target.login_url.clone();
    url.query_pairs_mut()
        .append_pair("iss", &s.reg.issuer)
        .append_pair("login_hint", &user.sub)
        .append_pair("target_link_uri", s.target.target_link_uri.as_str())
        .append_pair("client_id", &s.reg.client_id)
        .append_pair("lti_deployment_id", &s.reg.deployment_id);
    let started = Instant::now();
    let resp = s
        .client
        .get(url)
        .send()
        .await
        .map_err(|e| (transport_kind("login", &e), e.to_string()))?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // What a browser would send back: every cookie set, as name=value.
    let cookie = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let body = resp
        .bytes()
        .await
        .map_err(|e| (transport_kind("login", &e), e.to_string()))?;
    let login_us = micros(started.elapsed());
    if !matches!(status.as_u16(), 302 | 303) {
        return Err((format!("login_http_{}", status.as_u16()), snippet(&body)));
    }
    let location = location
        .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
        .ok_or_else(|| ("login_no_location".to_owned(), String::new()))?;
    // The authentication request's parameters, decoded in one pass.
    let (mut state, mut nonce, mut redirect) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query_of(&location).as_bytes()) {
        match k.as_ref() {
            "state" => state = Some(v.into_owned()),
            "nonce" => nonce = Some(v.into_owned()),
            "redirect_uri" => redirect = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(state), Some(nonce), Some(redirect)) = (state, nonce, redirect) else {
        return Err((
            "login_auth_request_incomplete".into(),
            location.chars().take(240).collect(),
        ));
    };
    let redirect_uri = Url::parse(&redirect)
        .ok()
        .filter(is_loopback)
        .ok_or_else(|| ("login_redirect_uri_not_loopback".to_owned(), redirect))?;
    Ok(Pending {
        launch,
        cookie,
        state,
        nonce,
        redirect_uri,
        login_us,
    })
}

async fn launch_once(s: &Shared, signed: &Signed) -> Result<u32, (String, String)> {
    let p = &signed.pending;
    let mut req = s
        .client
        .post(p.redirect_uri.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(signed.form.clone());
    if !p.cookie.is_empty() {
        req = req.header(reqwest::header::COOKIE, &p.cookie);
    }
    let started = Instant::now();
    let resp = req
        .send()
        .await
        .map_err(|e| (transport_kind("launch", &e), e.to_string()))?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .bytes()
        .await
        .map_err(|e| (transport_kind("launch", &e), e.to_string()))?;
    let took = micros(started.elapsed());
    if !status.is_redirection() {
        return Err((format!("launch_http_{}", status.as_u16()), snippet(&body)));
    }
    let location = location.unwrap_or_default();
    // ltijs redirects to a path on itself; the others to an absolute product URL, which is
    // checked as it came.
    let resolved = if location.starts_with("http://") || location.starts_with("https://") {
        location.clone()
    } else {
        match p.redirect_uri.join(&location) {
            Ok(u) => u.to_string(),
            Err(_) => return Err(("launch_bad_location".into(), location)),
        }
    };
    let param = s.target.tool.handoff_param();
    let handoff = query_value(&resolved, param).is_some_and(|v| !v.is_empty());
    let under_product = s
        .target
        .product_url
        .as_ref()
        .is_none_or(|u| resolved.starts_with(u.as_str()));
    if !handoff || !under_product {
        return Err((
            "launch_redirect_without_handoff".into(),
            location.chars().take(240).collect(),
        ));
    }
    Ok(took)
}

struct LoginOutcome {
    pending: Vec<Pending>,
    latencies: Vec<u32>,
    errors: Errors,
    attempted: u64,
}

async fn login_phase(s: &Arc<Shared>, first: usize, count: usize, c: usize) -> LoginOutcome {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c {
        let s = s.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = LoginOutcome {
                pending: Vec::new(),
                latencies: Vec::new(),
                errors: Errors::default(),
                attempted: 0,
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() >= s.deadline {
                    return out;
                }
                out.attempted += 1;
                match login_once(&s, first + i).await {
                    Ok(p) => {
                        out.latencies.push(p.login_us);
                        out.pending.push(p);
                    }
                    Err((kind, sample)) => out.errors.note(kind, sample),
                }
            }
        }));
    }
    let mut all = LoginOutcome {
        pending: Vec::with_capacity(count),
        latencies: Vec::with_capacity(count),
        errors: Errors::default(),
        attempted: 0,
    };
    for t in tasks {
        if let Ok(o) = t.await {
            all.pending.extend(o.pending);
            all.latencies.extend(o.latencies);
            all.errors.merge(o.errors);
            all.attempted += o.attempted;
        }
    }
    all
}

struct LaunchOutcome {
    ok: u64,
    attempted: u64,
    latencies: Vec<u32>,
    combined: Vec<u32>,
    errors: Errors,
}

async fn launch_phase(s: &Arc<Shared>, signed: Vec<Signed>, c: usize) -> LaunchOutcome {
    let count = signed.len();
    let signed = Arc::new(signed);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c {
        let s = s.clone();
        let next = next.clone();
        let signed = signed.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = LaunchOutcome {
                ok: 0,
                attempted: 0,
                latencies: Vec::new(),
                combined: Vec::new(),
                errors: Errors::default(),
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || Instant::now() >= s.deadline {
                    return out;
                }
                out.attempted += 1;
                let item = &signed[i];
                match launch_once(&s, item).await {
                    Ok(us) => {
                        out.ok += 1;
                        out.latencies.push(us);
                        out.combined.push(us.saturating_add(item.pending.login_us));
                    }
                    Err((kind, sample)) => out.errors.note(kind, sample),
                }
            }
        }));
    }
    let mut all = LaunchOutcome {
        ok: 0,
        attempted: 0,
        latencies: Vec::with_capacity(count),
        combined: Vec::with_capacity(count),
        errors: Errors::default(),
    };
    for t in tasks {
        if let Ok(o) = t.await {
            all.ok += o.ok;
            all.attempted += o.attempted;
            all.latencies.extend(o.latencies);
            all.combined.extend(o.combined);
            all.errors.merge(o.errors);
        }
    }
    all
}

/// Signs one id_token per pending login on every core (this is the platform's work, kept
/// out of the timed phases).
fn sign_all(
    key: &ToolKey,
    reg: &Registration,
    population: Population,
    target_link_uri: &str,
    pending: Vec<Pending>,
) -> (Vec<Signed>, Errors) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let now = platform::now_secs();
    let chunk = pending.len().div_ceil(threads).max(1);
    let mut items: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
    let results: Vec<(Vec<Signed>, Errors)> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks_mut(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut signed = Vec::with_capacity(part.len());
                    let mut errors = Errors::default();
                    for slot in part {
                        let Some(p) = slot.take() else { continue };
                        let user = population.user(p.launch);
                        let claims =
                            platform::launch_claims(reg, &user, &p.nonce, target_link_uri, now);
                        match key.sign(&claims) {
                            Ok(id_token) => {
                                let form = url::form_urlencoded::Serializer::new(String::new())
                                    .append_pair("id_token", &id_token)
                                    .append_pair("state", &p.state)
                                    .finish()
                                    .into();
                                signed.push(Signed { pending: p, form });
                            }
                            Err(e) => errors.note("sign_failed".into(), e.to_string()),
                        }
                    }
                    (signed, errors)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut signed = Vec::new();
    let mut errors = Errors::default();
    for (s, e) in results {
        signed.extend(s);
        errors.merge(e);
    }
    (signed, errors)
}

/// The HTTP client of all the browsers: no redirects followed, pooled keep-alive
/// connections, bounded timeouts, never a proxy.
pub fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?)
}

/// Runs rounds of login, sign, launch until the plan's launch count, timed budget or
/// deadline is reached.
#[allow(clippy::too_many_arguments)]
pub async fn run_launches(
    label: &str,
    client: reqwest::Client,
    target: Target,
    reg: Registration,
    population: Population,
    key: &ToolKey,
    plan: &Plan,
    probe: &CpuProbe,
) -> LaunchRun {
    let shared = Arc::new(Shared {
        client,
        target,
        reg,
        population,
        deadline: plan.deadline,
    });
    let c = plan.concurrency.max(1);
    let mut errors = Errors::default();
    let (mut login_lat, mut launch_lat, mut combined) = (Vec::new(), Vec::new(), Vec::new());
    let (mut login_t, mut launch_t, mut sign_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut logins_attempted, mut logins_ok, mut launches_attempted, mut ok) = (0, 0, 0, 0);
    let mut cpu = CpuTotals::default();
    let mut done = 0usize;
    let mut rounds = 0;
    let mut batch = plan.first_batch.max(1);
    loop {
        let timed = login_t + launch_t;
        if done >= plan.launches || timed >= plan.budget || Instant::now() >= plan.deadline {
            break;
        }
        let n = batch.min(plan.launches - done);
        rounds += 1;

        let before = probe.snapshot();
        let started = Instant::now();
        let logins = login_phase(&shared, plan.first_launch + done, n, c).await;
        login_t += started.elapsed();
        cpu.add(&before, &probe.snapshot());
        logins_attempted += logins.attempted;
        logins_ok += logins.pending.len() as u64;
        login_lat.extend(logins.latencies);
        errors.merge(logins.errors);

        let started = Instant::now();
        let (signed, sign_errors) = {
            let s = shared.clone();
            let key = key.clone();
            let pending = logins.pending;
            tokio::task::spawn_blocking(move || {
                sign_all(
                    &key,
                    &s.reg,
                    s.population,
                    s.target.target_link_uri.as_str(),
                    pending,
                )
            })
            .await
            .unwrap_or_default()
        };
        sign_t += started.elapsed();
        errors.merge(sign_errors);

        let before = probe.snapshot();
        let started = Instant::now();
        let launches = launch_phase(&shared, signed, c).await;
        launch_t += started.elapsed();
        cpu.add(&before, &probe.snapshot());
        launches_attempted += launches.attempted;
        ok += launches.ok;
        launch_lat.extend(launches.latencies);
        combined.extend(launches.combined);
        errors.merge(launches.errors);

        done += n;
        // Size the next round to what is left of the budget at the rate seen so far.
        let timed = (login_t + launch_t).as_secs_f64();
        let left = plan.budget.as_secs_f64() - timed;
        if timed > 0.0 && left > 0.0 {
            let rate = done as f64 / timed;
            batch = ((rate * left) as usize).clamp(c * 4, plan.max_batch.max(c * 4));
        }
    }
    let timed = (login_t + launch_t).as_secs_f64();
    LaunchRun {
        label: label.to_owned(),
        tool: shared.target.tool,
        concurrency: c,
        launches_ok: ok,
        logins_attempted,
        logins_ok,
        launches_attempted,
        rounds,
        login_secs: login_t.as_secs_f64(),
        launch_secs: launch_t.as_secs_f64(),
        sign_secs: sign_t.as_secs_f64(),
        launches_per_sec: if timed > 0.0 { ok as f64 / timed } else { 0.0 },
        login: Latency::from_micros(login_lat),
        launch: Latency::from_micros(launch_lat),
        combined: Latency::from_micros(combined),
        errors,
        cpu: cpu.per_unit(probe, ok),
        ceiling: None,
    }
}

/// GETs a trivial endpoint at the same concurrency: what the generator can do at most.
pub async fn run_ceiling(
    client: reqwest::Client,
    url: Url,
    concurrency: usize,
    requests: usize,
    budget: Duration,
    deadline: Instant,
    probe: &CpuProbe,
) -> Ceiling {
    let c = concurrency.max(1);
    let stop = (Instant::now() + budget).min(deadline);
    let next = Arc::new(AtomicUsize::new(0));
    let before = probe.snapshot();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c {
        let client = client.clone();
        let url = url.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Errors::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || Instant::now() >= stop {
                    return (lat, errors);
                }
                let t = Instant::now();
                match client.get(url.clone()).send().await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await;
                        match body {
                            Ok(_) if status.is_success() => lat.push(micros(t.elapsed())),
                            Ok(b) => errors
                                .note(format!("ceiling_http_{}", status.as_u16()), snippet(&b)),
                            Err(e) => errors.note(transport_kind("ceiling", &e), e.to_string()),
                        }
                    }
                    Err(e) => errors.note(transport_kind("ceiling", &e), e.to_string()),
                }
            }
        }));
    }
    let mut lat = Vec::new();
    let mut errors = Errors::default();
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors.merge(e);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut cpu = CpuTotals::default();
    cpu.add(&before, &probe.snapshot());
    let ok = lat.len() as u64;
    Ceiling {
        url: url.to_string(),
        concurrency: c,
        requests_ok: ok,
        errors,
        secs,
        requests_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        latency: Latency::from_micros(lat),
        cpu: cpu.per_unit(probe, ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_name_lmsbridge_checks_and_shorten_the_rest() {
        let page = b"<html><dl><dt>Check that failed</dt><dd>nonce_replayed</dd></dl></html>";
        assert_eq!(snippet(page), "nonce_replayed");
        let long = "x ".repeat(500);
        assert_eq!(snippet(long.as_bytes()).len(), 240);
    }

    #[test]
    fn location_queries_are_read_without_the_rest_of_the_url() {
        let loc = "http://127.0.0.1:9/auth?scope=openid&state=a%2Bb%3D&nonce=n+1&redirect_uri=http%3A%2F%2F127.0.0.1%3A8%2Flti%2Flaunch#frag";
        assert_eq!(query_value(loc, "state").as_deref(), Some("a+b="));
        assert_eq!(query_value(loc, "nonce").as_deref(), Some("n 1"));
        assert_eq!(
            query_value(loc, "redirect_uri").as_deref(),
            Some("http://127.0.0.1:8/lti/launch")
        );
        assert_eq!(query_value(loc, "missing"), None);
        assert_eq!(query_value("http://127.0.0.1:1/product", "code"), None);
        assert_eq!(
            query_value("/?ltik=abc", "ltik").as_deref(),
            Some("abc"),
            "relative locations too"
        );
    }

    #[test]
    fn each_tool_names_its_handoff() {
        assert_eq!(Tool::Lmsbridge.handoff_param(), "code");
        assert_eq!(Tool::Pylti1p3.handoff_param(), "launch_id");
        assert_eq!(Tool::Ltijs.handoff_param(), "ltik");
    }
}
