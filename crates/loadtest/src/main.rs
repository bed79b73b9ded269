//! `lmsbridge-loadtest`: plays an LTI 1.3 platform and many browsers against a tool on
//! loopback, and measures full launches (OIDC login initiation, then the id_token form post
//! with the browser's cookies) per second and their latency. The same code drives
//! lmsbridge, a pylti1p3 Flask app and an ltijs app (`--tool`); `bench/run.sh` runs all of
//! them and docs/BENCHMARKS.md holds the figures.
//!
//! Every run is bounded: a launch count, a budget of timed seconds, a wall-clock limit after
//! which the process exits by itself, and loopback targets only.

mod deadline;
mod driver;
mod micro;
mod platform;
mod report;
mod stats;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use driver::{LaunchRun, Plan, Target, Tool};
use platform::{Population, Registration, is_loopback};
use stats::CpuProbe;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use url::Url;

#[derive(Debug, Parser)]
#[command(name = "lmsbridge-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run launches against one tool at each concurrency and write the results as JSON.
    Run(Box<RunArgs>),
    /// Print Markdown tables (absolute figures and ratios) from result files.
    Report {
        /// JSON files written by `run --out`.
        files: Vec<PathBuf>,
    },
    /// Measure single-core costs: signing, RS256 verification, full id_token validation.
    Microbench {
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
    },
    /// An assignment deadline: a burst of scores through lmsbridge's API, drained into a
    /// rate-limited simulated LMS (see docs/BENCHMARKS.md).
    Deadline(Box<deadline::DeadlineArgs>),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Which tool answers; decides what a successful launch looks like.
    #[arg(long, value_enum)]
    tool: Tool,
    /// A name for this run in the tables, e.g. "lmsbridge (SQLite)".
    #[arg(long)]
    label: Option<String>,
    /// The tool's OIDC login initiation URL.
    #[arg(long)]
    login_url: Url,
    /// The target_link_uri sent at login and in the id_token.
    #[arg(long)]
    target_link_uri: Url,
    /// A successful launch must redirect under this URL (lmsbridge: the tenant's launch URL).
    #[arg(long)]
    product_url: Option<Url>,
    /// Polled until it answers 2xx before any load is sent.
    #[arg(long)]
    ready_url: Option<Url>,
    /// Concurrency levels, in order.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    concurrency: Vec<usize>,
    /// Launches per concurrency level, at most.
    #[arg(long, default_value_t = 20_000)]
    launches: usize,
    /// Timed seconds (login + launch phases) per concurrency level, at most.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
    /// The process exits after this many seconds whatever it is doing.
    #[arg(long, default_value_t = 900)]
    wall_limit: u64,
    /// Untimed launches first, to warm the tool's key cache, pools and JIT.
    #[arg(long, default_value_t = 300)]
    warmup: usize,
    /// Launches in the first round; later rounds are sized to the budget left.
    #[arg(long, default_value_t = 1000)]
    first_batch: usize,
    #[arg(long, default_value_t = 5000)]
    max_batch: usize,
    /// Distinct users (`sub`) the launches cycle through.
    #[arg(long, default_value_t = 5000)]
    users: usize,
    /// Distinct courses; each user belongs to one.
    #[arg(long, default_value_t = 8)]
    contexts: usize,
    #[command(flatten)]
    platform: PlatformArgs,
    /// Also measure the generator's ceiling: GET this trivial URL at each concurrency.
    #[arg(long)]
    ceiling_url: Option<Url>,
    #[arg(long, default_value_t = 40_000)]
    ceiling_requests: usize,
    #[arg(long, default_value_t = 5)]
    ceiling_seconds: u64,
    /// Process ids of the tool, for CPU per launch (repeatable).
    #[arg(long = "tool-pid")]
    tool_pids: Vec<u32>,
    /// Command names of helper processes to account CPU for, e.g. postgres (repeatable).
    #[arg(long = "count-comm")]
    comms: Vec<String>,
    /// Where to write the results (a JSON array, one entry per concurrency).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PlatformArgs {
    /// Where the platform's JWKS is served; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    platform_listen: SocketAddr,
    /// The platform key (PKCS#8 DER), created if missing; keep it to reuse registrations.
    #[arg(long)]
    platform_key: Option<PathBuf>,
    /// The platform's issuer; `http://<platform-listen>` by default.
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long, default_value = "bench")]
    client_id: String,
    #[arg(long, default_value = "d1")]
    deployment_id: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Report { files } => report(&files),
        Command::Microbench { iterations } => microbench(iterations),
        Command::Deadline(args) => deadline::run(*args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lmsbridge-loadtest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn report(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut runs: Vec<LaunchRun> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let mut these: Vec<LaunchRun> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
        runs.append(&mut these);
    }
    print!("{}", report::markdown(&runs));
    Ok(())
}

fn microbench(iterations: usize) -> anyhow::Result<()> {
    println!("| operation (one core) | µs per op |");
    println!("|---|---:|");
    for r in micro::run(iterations.max(1))? {
        println!("| {} | {:.1} |", r.name, r.micros_per_op);
    }
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    for (name, url) in [
        ("--login-url", Some(&args.login_url)),
        ("--ready-url", args.ready_url.as_ref()),
        ("--ceiling-url", args.ceiling_url.as_ref()),
    ] {
        if let Some(u) = url
            && !is_loopback(u)
        {
            bail!("{name} {u} is not on loopback: load is only ever sent to 127.0.0.0/8 or ::1");
        }
    }
    let wall = Duration::from_secs(args.wall_limit);
    std::thread::spawn(move || {
        std::thread::sleep(wall);
        eprintln!("lmsbridge-loadtest: wall-clock limit of {wall:?} reached, exiting");
        std::process::exit(3);
    });
    let deadline = Instant::now() + wall;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run_async(args, deadline))
}

async fn wait_ready(url: &Url, deadline: Instant) -> anyhow::Result<()> {
    let client = driver::client(1)?;
    let until = (Instant::now() + Duration::from_secs(120)).min(deadline);
    loop {
        if let Ok(r) = client.get(url.clone()).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("{url} did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_async(args: RunArgs, deadline: Instant) -> anyhow::Result<()> {
    let key = platform::load_or_create_key(args.platform.platform_key.as_deref())?;
    let listener = tokio::net::TcpListener::bind(args.platform.platform_listen)
        .await
        .with_context(|| format!("binding {}", args.platform.platform_listen))?;
    let addr = listener.local_addr()?;
    platform::serve_jwks(listener, &key).await;
    let reg = Registration {
        issuer: args
            .platform
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}")),
        client_id: args.platform.client_id.clone(),
        deployment_id: args.platform.deployment_id.clone(),
    };
    eprintln!(
        "platform: issuer {} jwks http://{addr}/jwks client_id {} deployment_id {}",
        reg.issuer, reg.client_id, reg.deployment_id
    );
    if let Some(u) = &args.ready_url {
        wait_ready(u, deadline).await?;
    }
    let target = Target {
        tool: args.tool,
        login_url: args.login_url.clone(),
        target_link_uri: args.target_link_uri.clone(),
        product_url: args.product_url.clone(),
    };
    let population = Population {
        users: args.users,
        contexts: args.contexts,
    };
    let probe = CpuProbe {
        pids: args.tool_pids.clone(),
        comms: args.comms.clone(),
    };
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.tool).to_lowercase());
    let mut next_launch = 0;

    if args.warmup > 0 {
        // Warm up no harder than the first measured level (serial runs stay serial).
        let warm_c = args.concurrency.first().copied().unwrap_or(8).clamp(1, 8);
        let plan = Plan {
            launches: args.warmup,
            concurrency: warm_c,
            budget: Duration::from_secs(60),
            deadline,
            first_batch: args.warmup,
            max_batch: args.warmup,
            first_launch: next_launch,
        };
        let warm = driver::run_launches(
            &label,
            driver::client(warm_c)?,
            target.clone(),
            reg.clone(),
            population,
            &key,
            &plan,
            &CpuProbe::default(),
        )
        .await;
        next_launch += args.warmup;
        eprintln!(
            "{label}: warm-up {} of {} launches succeeded",
            warm.launches_ok, args.warmup
        );
        if warm.launches_ok == 0 {
            bail!(
                "no warm-up launch succeeded; failures: {}",
                serde_json::to_string(&warm.errors)?
            );
        }
    }

    let mut runs = Vec::new();
    for &c in &args.concurrency {
        let ceiling = match &args.ceiling_url {
            Some(u) => Some(
                driver::run_ceiling(
                    driver::client(c)?,
                    u.clone(),
                    c,
                    args.ceiling_requests,
                    Duration::from_secs(args.ceiling_seconds),
                    deadline,
                    &probe,
                )
                .await,
            ),
            None => None,
        };
        let plan = Plan {
            launches: args.launches,
            concurrency: c,
            budget: Duration::from_secs(args.max_seconds),
            deadline,
            first_batch: args.first_batch.min(args.launches),
            max_batch: args.max_batch,
            first_launch: next_launch,
        };
        let mut r = driver::run_launches(
            &label,
            driver::client(c)?,
            target.clone(),
            reg.clone(),
            population,
            &key,
            &plan,
            &probe,
        )
        .await;
        next_launch += r.logins_attempted as usize;
        r.ceiling = ceiling;
        eprintln!(
            "{label} c={c}: {:.0} launches/s ({} ok of {} in {:.1}+{:.1} s; signing {:.1} s), login p50 {:.2} p99 {:.2} ms, launch p50 {:.2} p99 {:.2} ms, failures {}",
            r.launches_per_sec,
            r.launches_ok,
            r.logins_attempted,
            r.login_secs,
            r.launch_secs,
            r.sign_secs,
            r.login.p50_ms,
            r.login.p99_ms,
            r.launch.p50_ms,
            r.launch.p99_ms,
            serde_json::to_string(&r.errors.counts)?,
        );
        if let Some(x) = &r.ceiling {
            eprintln!(
                "generator ceiling c={c}: {:.0} GET/s on {} (p99 {:.2} ms, generator {:.3} CPU ms per request)",
                x.requests_per_sec, x.url, x.latency.p99_ms, x.cpu.generator_ms
            );
        }
        runs.push(r);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&runs)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    print!("{}", report::markdown(&runs));
    Ok(())
}
