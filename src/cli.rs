//! Command-line interface.

use crate::settings::{DbFlags, SettingsFlags, load};

#[path = "google_cli.rs"]
mod google_cli;
use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::{Actor, PlatformId, PlatformKind, TenantId};
use serde_json::json;
use server::{AppBuilder, Settings};
use std::path::PathBuf;
use std::process::ExitCode;
use store::{NewPlatform, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

/// lmsbridge: one small API for your product; LTI 1.3 / LTI Advantage, Google Classroom and
/// Moodle towards the schools' learning platforms.
#[derive(Debug, Parser)]
#[command(name = "lmsbridge", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// TOML settings file (environment variables and flags override it)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (HTTP server and passback worker)
    Serve {
        #[command(flatten)]
        flags: SettingsFlags,
        /// Do not run the passback worker in this process (run `lmsbridge worker` elsewhere)
        #[arg(long)]
        no_worker: bool,
    },
    /// Run only the passback worker
    Worker {
        #[command(flatten)]
        db: DbFlags,
    },
    /// Run the gateway with a simulated LMS and a sample product, all pre-registered
    Demo {
        #[command(flatten)]
        flags: SettingsFlags,
    },
    /// Apply database migrations and exit
    Migrate {
        #[command(flatten)]
        db: DbFlags,
    },
    /// Show configuration
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage tenants
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage platform registrations
    Platform {
        #[command(subcommand)]
        command: PlatformCommand,
    },
    /// Manage LTI deployments of a platform
    Deployment {
        #[command(subcommand)]
        command: DeploymentCommand,
    },
    /// Manage the tool's signing keys
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check the audit log
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Grade passback queue
    Scores {
        #[command(subcommand)]
        command: ScoresCommand,
    },
    /// Google Classroom: the tenant's OAuth client, teachers' grants, connect links
    Google {
        #[command(subcommand)]
        command: google_cli::GoogleCommand,
    },
    /// Write the Moodle plugin (local_lmsbridge) as DIR/local_lmsbridge.zip, ready for Moodle's
    /// Site administration > Plugins > Install plugins
    MoodlePlugin {
        /// Directory to write the zip into (created if missing)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Pair Moodle sites running the lmsbridge plugin, and reconcile with them
    Moodle {
        #[command(subcommand)]
        command: MoodleCommand,
    },
}

// Parsed once per process, like the other command enums.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum MoodleCommand {
    /// Pair a Moodle site with its LTI 1.3 platform registration: prints the site id and
    /// secret (shown once) to paste into the plugin's settings
    Pair {
        #[arg(long)]
        tenant: TenantId,
        /// The Moodle platform registered for LTI 1.3 in this tenant
        #[arg(long)]
        platform: PlatformId,
        /// The Moodle site's address (its wwwroot)
        #[arg(long)]
        site_url: Url,
        /// A file holding the web service token reconciliation uses (optional)
        #[arg(long, value_name = "PATH")]
        ws_token_file: Option<PathBuf>,
        #[command(flatten)]
        flags: SettingsFlags,
    },
    /// List a tenant's paired Moodle sites
    Sites {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbFlags,
    },
    /// End a pairing: the site's requests are refused from now on
    Unpair {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        site: String,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Read what events missed from the plugin's web service functions now
    Reconcile {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        site: String,
        #[command(flatten)]
        db: DbFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScoresCommand {
    /// Queue dead scores again after fixing what killed them (a dead score with a newer score
    /// for the same person and target is left alone)
    Retry {
        #[arg(long)]
        tenant: TenantId,
        /// Replay every replayable dead score (required: says what is being retried)
        #[arg(long)]
        dead: bool,
        /// Only these scores (repeatable)
        #[arg(long = "id")]
        ids: Vec<domain::ScoreId>,
        #[command(flatten)]
        db: DbFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings, secrets masked
    Print {
        #[command(flatten)]
        flags: SettingsFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its id and API key (shown once)
    Create {
        /// Display name
        #[arg(long)]
        name: String,
        /// The product page that receives launches (omit to use lmsbridge's launch summary page)
        #[arg(long)]
        launch_url: Option<Url>,
        #[command(flatten)]
        db: DbFlags,
    },
    /// List tenants
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Issue the LTI Dynamic Registration URL for a tenant, to paste into Canvas or Moodle
    /// (shown once; registrations made through it wait for `platform enable`)
    RegistrationUrl {
        #[arg(long)]
        tenant: TenantId,
        /// How many days the URL stays valid
        #[arg(long, default_value_t = 14)]
        days: i64,
        /// A note for the admin listing, e.g. which school it was sent to
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        flags: SettingsFlags,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Register an LMS (an LTI 1.3 registration: issuer + client_id)
    Add {
        #[arg(long)]
        tenant: TenantId,
        /// canvas, moodle or lti
        #[arg(long)]
        kind: PlatformKind,
        /// The platform's issuer (iss), exactly as it sends it
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        client_id: String,
        /// OIDC authentication endpoint
        #[arg(long)]
        auth_url: Url,
        /// OAuth 2.0 token endpoint
        #[arg(long)]
        token_url: Url,
        /// The platform's JWKS URL
        #[arg(long)]
        jwks_url: Url,
        /// `aud` for client assertions, when the platform wants something other than the token URL
        #[arg(long)]
        token_audience: Option<String>,
        /// Deployment ids to accept (repeatable)
        #[arg(long = "deployment-id")]
        deployment_ids: Vec<String>,
        /// Record launches from unknown deployments as pending for approval instead of refusing them
        #[arg(long)]
        accept_new_deployments: bool,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Store the LTI 1.1 consumer key and secret of the platform's old install, to trust the
    /// lti1p1 migration claim (the secret is read from LMSBRIDGE_LTI11_SECRET or stdin)
    SetLti11 {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        platform: PlatformId,
        #[arg(long)]
        consumer_key: String,
        #[command(flatten)]
        db: DbFlags,
    },
    /// List a tenant's platforms
    List {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Accept launches from a registration (Dynamic Registration stores them disabled)
    Enable {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        platform: PlatformId,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Refuse launches from a registration until it is enabled again
    Disable {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        platform: PlatformId,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Show one platform with its deployments and the URLs to give the LMS
    Show {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        platform: PlatformId,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        flags: SettingsFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Accept launches from another deployment of a platform
    Add {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        platform: PlatformId,
        #[arg(long)]
        deployment_id: String,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Approve a deployment that was recorded as pending at launch
    Approve {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        platform: PlatformId,
        #[arg(long)]
        deployment_id: String,
        #[command(flatten)]
        db: DbFlags,
    },
    /// List a platform's deployments with their status
    List {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        platform: PlatformId,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the tool keys and their status
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Add a new key: published now, signing after --publish-lead, old keys retired --grace later
    Rotate {
        /// Seconds the new key is published before it signs [default: setting key_publish_lead_secs]
        #[arg(long)]
        publish_lead: Option<i64>,
        /// Seconds old keys stay published after the new key starts signing [default: setting key_grace_secs]
        #[arg(long)]
        grace: Option<i64>,
        #[command(flatten)]
        db: DbFlags,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chains (all, or one tenant's)
    Verify {
        #[arg(long)]
        tenant: Option<TenantId>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbFlags,
    },
    /// Write a tenant's audit log to stdout, oldest first
    Export {
        #[arg(long)]
        tenant: TenantId,
        /// Only entries at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z)
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this time (RFC 3339)
        #[arg(long)]
        until: Option<String>,
        /// jsonl (one JSON object per line) or csv
        #[arg(long, default_value = "jsonl")]
        format: ExportFormat,
        #[command(flatten)]
        db: DbFlags,
    },
}

/// Audit export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// Parses arguments, runs the command, and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { flags, no_worker } => {
            let mut settings = load(config, &flags)?;
            settings.run_worker &= !no_worker;
            serve(settings).await
        }
        Command::Worker { db } => worker(load(config, &(&db).into())?).await,
        Command::Demo { flags } => crate::demo::run(load(config, &flags)?).await,
        Command::Migrate { db } => {
            let settings = load(config, &(&db).into())?;
            open_store(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Print { flags },
        } => {
            let settings = load(config, &flags)?;
            println!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
        Command::Tenant { command } => tenant(config, command).await,
        Command::Platform { command } => platform(config, command).await,
        Command::Deployment { command } => deployment(config, command).await,
        Command::Keys { command } => keys(config, command).await,
        Command::Google { command } => google_cli::google(config, command).await,
        Command::MoodlePlugin { out } => {
            let path = crate::moodle_plugin::write_zip(&out)
                .with_context(|| format!("cannot write the plugin zip into {}", out.display()))?;
            print_json(&json!({
                "path": path,
                "plugin": "local_lmsbridge",
                "folder": crate::moodle_plugin::PLUGIN_FOLDER,
                "files": crate::moodle_plugin::FILES.len(),
            }))
        }
        Command::Moodle { command } => moodle(config, command).await,
        Command::Scores {
            command:
                ScoresCommand::Retry {
                    tenant,
                    dead,
                    ids,
                    db,
                },
        } => {
            anyhow::ensure!(dead, "say which scores to retry: --dead");
            let store = open_store(&load(config, &(&db).into())?).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let only = (!ids.is_empty()).then_some(ids.as_slice());
            let replayed = store
                .tenant(&scope)
                .replay_dead_scores(only, &operator())
                .await?;
            print_json(&json!({"replayed": replayed}))
        }
        Command::Audit {
            command:
                AuditCommand::Export {
                    tenant,
                    since,
                    until,
                    format,
                    db,
                },
        } => {
            let store = open_store(&load(config, &(&db).into())?).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let since = since
                .as_deref()
                .map(|s| rfc3339_micros(s, "--since"))
                .transpose()?;
            let until = until
                .as_deref()
                .map(|s| rfc3339_micros(s, "--until"))
                .transpose()?;
            export_audit(&store.tenant(&scope), since, until, format).await
        }
        Command::Audit {
            command: AuditCommand::Verify { tenant, json, db },
        } => {
            let store = open_store(&load(config, &(&db).into())?).await?;
            let chain = tenant.map(|t| t.to_string());
            let reports = store.verify_audit(chain.as_deref()).await?;
            let broken = reports.iter().filter(|r| !r.is_intact()).count();
            if json {
                print_json(&reports)?;
            } else {
                for r in &reports {
                    match &r.broken_at {
                        None => println!("{}: intact ({} entries)", r.chain, r.entries),
                        Some((seq, why)) => println!("{}: BROKEN at entry {seq}: {why}", r.chain),
                    }
                }
            }
            anyhow::ensure!(broken == 0, "{broken} audit chain(s) failed verification");
            Ok(())
        }
    }
}

fn rfc3339_micros(value: &str, flag: &str) -> anyhow::Result<i64> {
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            anyhow::anyhow!("{flag} must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z")
        })?;
    Ok(i64::try_from(t.unix_timestamp_nanos() / 1000)?)
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

async fn export_audit(
    t: &store::TenantStore<'_>,
    since: Option<i64>,
    until: Option<i64>,
    format: ExportFormat,
) -> anyhow::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if matches!(format, ExportFormat::Csv) {
        writeln!(
            out,
            "seq,at_micros,actor_kind,actor_id,action,subject,detail,prev_hash,hash"
        )?;
    }
    let mut after = None;
    loop {
        let page = t
            .query_audit(&store::AuditFilter {
                since,
                until,
                after_seq: after,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for e in &page {
            match format {
                ExportFormat::Jsonl => writeln!(out, "{}", serde_json::to_string(e)?)?,
                ExportFormat::Csv => writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    e.seq,
                    e.at,
                    csv_field(&e.actor_kind),
                    csv_field(&e.actor_id),
                    csv_field(&e.action),
                    csv_field(&e.subject),
                    csv_field(&e.detail),
                    e.prev_hash,
                    e.hash
                )?,
            }
        }
        if i64::try_from(page.len())? < store::MAX_AUDIT_PAGE {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

/// The actor recorded for changes made from the command line.
fn operator() -> Actor {
    Actor::system(format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into())
    ))
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if settings.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    }
    Store::open(&settings.database_url).await.with_context(|| {
        format!(
            "opening the database {}",
            server::config::mask_url_password(&settings.database_url)
        )
    })
}

async fn tenant_scope(store: &Store, id: TenantId) -> anyhow::Result<store::TenantScope> {
    store.tenant_scope(id).await.map_err(|e| match e {
        store::StoreError::NotFound => anyhow::anyhow!("no tenant with id {id}"),
        other => other.into(),
    })
}

/// The tenant's store with the master key its sealed secrets are opened and sealed with
/// (created in the data directory on first use when none is configured).
async fn open_tenant_sealed(
    settings: &Settings,
    tenant: TenantId,
) -> anyhow::Result<(store::crypto::MasterKey, Store, store::TenantScope)> {
    let master =
        server::master_key::load_or_create(settings.master_key.as_deref(), &settings.data_dir)?;
    let store = open_store(settings).await?;
    let scope = tenant_scope(&store, tenant).await?;
    Ok((master, store, scope))
}

/// Prints rows as JSON (`--json`), or one line each for an operator to read.
fn print_rows<T: serde::Serialize>(
    rows: &[T],
    json: bool,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        return print_json(&rows);
    }
    for r in rows {
        println!("{}", line(r));
    }
    Ok(())
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn tenant(config: Option<&std::path::Path>, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create {
            name,
            launch_url,
            db,
        } => {
            let store = open_store(&load(config, &(&db).into())?).await?;
            let (tenant, key) = store
                .create_tenant(&name, launch_url.as_ref(), &operator())
                .await
                .context("creating the tenant")?;
            print_json(&json!({"id": tenant.id, "name": tenant.name, "api_key": key.secret()}))
        }
        TenantCommand::List { json, db } => {
            let store = open_store(&load(config, &(&db).into())?).await?;
            let tenants = store.list_tenants().await?;
            print_rows(&tenants, json, |t| {
                format!(
                    "{}  {}  {}",
                    t.id,
                    t.name,
                    t.launch_url
                        .as_ref()
                        .map_or_else(|| "(launch summary page)".into(), |u| u.to_string())
                )
            })
        }
        TenantCommand::RegistrationUrl {
            tenant,
            days,
            label,
            flags,
        } => {
            anyhow::ensure!(
                (1..=365).contains(&days),
                "--days must be between 1 and 365"
            );
            let settings = load(config, &flags)?;
            let store = open_store(&settings).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let invite = store
                .tenant(&scope)
                .issue_registration_invite(label.as_deref(), days * 86_400, &operator())
                .await?;
            let mut url = settings.public("lti/register");
            url.query_pairs_mut().append_pair("invite", invite.token());
            print_json(&json!({
                "registration_url": url,
                "invite_id": invite.id,
                "expires_at": invite.expires_at,
            }))
        }
    }
}

async fn platform(
    config: Option<&std::path::Path>,
    command: PlatformCommand,
) -> anyhow::Result<()> {
    match command {
        PlatformCommand::Add {
            tenant,
            kind,
            issuer,
            client_id,
            auth_url,
            token_url,
            jwks_url,
            token_audience,
            deployment_ids,
            accept_new_deployments,
            db,
        } => {
            anyhow::ensure!(
                kind.speaks_lti(),
                "platform add registers LTI 1.3 platforms (canvas, moodle, lti)"
            );
            let store = open_store(&load(config, &(&db).into())?).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let p = store
                .tenant(&scope)
                .add_platform(
                    &NewPlatform {
                        kind,
                        issuer,
                        client_id,
                        auth_url,
                        token_url,
                        jwks_url,
                        token_audience,
                        accept_new_deployments,
                        deployment_ids,
                    },
                    &operator(),
                )
                .await
                .context("registering the platform")?;
            print_json(&json!({"id": p.id}))
        }
        PlatformCommand::SetLti11 {
            tenant,
            platform,
            consumer_key,
            db,
        } => {
            let settings = load(config, &(&db).into())?;
            let secret = match std::env::var("LMSBRIDGE_LTI11_SECRET") {
                Ok(s) if !s.is_empty() => s,
                _ => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the secret from stdin")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            anyhow::ensure!(!secret.is_empty(), "the LTI 1.1 secret is empty");
            let (master, store, scope) = open_tenant_sealed(&settings, tenant).await?;
            store
                .tenant(&scope)
                .set_lti11_credentials(platform, &consumer_key, &secret, &master, &operator())
                .await
                .context("storing the LTI 1.1 credentials")?;
            print_json(&json!({"platform_id": platform, "lti11_consumer_key": consumer_key}))
        }
        PlatformCommand::Enable {
            tenant,
            platform,
            db,
        } => set_enabled(config, tenant, platform, &db, true).await,
        PlatformCommand::Disable {
            tenant,
            platform,
            db,
        } => set_enabled(config, tenant, platform, &db, false).await,
        PlatformCommand::List { tenant, json, db } => {
            let store = open_store(&load(config, &(&db).into())?).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let platforms = store.tenant(&scope).list_platforms().await?;
            print_rows(&platforms, json, |p| {
                format!(
                    "{}  {:<7} {}  client_id={}{}",
                    p.id,
                    p.kind,
                    p.issuer,
                    p.client_id,
                    if p.enabled { "" } else { "  (disabled)" }
                )
            })
        }
        PlatformCommand::Show {
            tenant,
            platform,
            json,
            flags,
        } => {
            let settings = load(config, &flags)?;
            let store = open_store(&settings).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let t = store.tenant(&scope);
            let p = t.platform(platform).await.map_err(|e| match e {
                store::StoreError::NotFound => {
                    anyhow::anyhow!("tenant {tenant} has no platform {platform}")
                }
                other => other.into(),
            })?;
            let deployments = t.deployments(platform).await?;
            let (registered_via, platform_configuration) = t.platform_origin(platform).await?;
            let tool = json!({
                "login_url": settings.public("lti/login"),
                "login_url_for_this_registration": settings.public(&format!("lti/login/{}", p.id)),
                "launch_url": settings.public("lti/launch"),
                "launch_url_for_this_registration": settings.public(&format!("lti/launch/{}", p.id)),
                "jwks_url": settings.public(".well-known/jwks.json"),
            });
            let out = json!({
                "platform": p,
                "deployments": deployments,
                "tool": tool,
                "registered_via": registered_via,
                "platform_configuration": platform_configuration,
            });
            if json {
                return print_json(&out);
            }
            println!(
                "{} ({}) issuer={} client_id={} registered {} {}",
                p.id,
                p.kind,
                p.issuer,
                p.client_id,
                registered_via,
                if p.enabled {
                    "enabled"
                } else {
                    "DISABLED: run `platform enable`"
                }
            );
            println!(
                "  auth:  {}\n  token: {}\n  jwks:  {}",
                p.auth_url, p.token_url, p.jwks_url
            );
            for d in deployments {
                println!("  deployment {}", d.deployment_id);
            }
            println!(
                "Give the LMS these tool URLs:\n{}",
                serde_json::to_string_pretty(&tool)?
            );
            Ok(())
        }
    }
}

async fn set_enabled(
    config: Option<&std::path::Path>,
    tenant: TenantId,
    platform: PlatformId,
    db: &DbFlags,
    enable: bool,
) -> anyhow::Result<()> {
    let store = open_store(&load(config, &db.into())?).await?;
    let scope = tenant_scope(&store, tenant).await?;
    let p = store
        .tenant(&scope)
        .set_platform_enabled(platform, enable, &operator())
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound => {
                anyhow::anyhow!("tenant {tenant} has no platform {platform}")
            }
            other => other.into(),
        })?;
    print_json(&json!({"platform": p.id, "enabled": p.enabled}))
}

async fn deployment(
    config: Option<&std::path::Path>,
    command: DeploymentCommand,
) -> anyhow::Result<()> {
    let (DeploymentCommand::Add {
        tenant,
        platform,
        db,
        ..
    }
    | DeploymentCommand::Approve {
        tenant,
        platform,
        db,
        ..
    }
    | DeploymentCommand::List {
        tenant,
        platform,
        db,
        ..
    }) = &command;
    let store = open_store(&load(config, &db.into())?).await?;
    let scope = tenant_scope(&store, *tenant).await?;
    let t = store.tenant(&scope);
    let platform = *platform;
    match command {
        DeploymentCommand::Add { deployment_id, .. } => {
            let d = t
                .add_deployment(platform, &deployment_id, &operator())
                .await
                .context("adding the deployment")?;
            print_json(
                &json!({"id": d.id, "platform_id": d.platform_id, "deployment_id": d.deployment_id}),
            )
        }
        DeploymentCommand::Approve { deployment_id, .. } => {
            t.approve_deployment(platform, &deployment_id, &operator())
                .await
                .map_err(|e| match e {
                    store::StoreError::NotFound => anyhow::anyhow!(
                        "no pending deployment {deployment_id:?} on platform {platform}"
                    ),
                    other => other.into(),
                })?;
            print_json(
                &json!({"platform_id": platform, "deployment_id": deployment_id, "status": "active"}),
            )
        }
        DeploymentCommand::List { json, .. } => {
            let list = t.deployments(platform).await?;
            print_rows(&list, json, |d| {
                format!("{}  {}", d.deployment_id, d.status.as_str())
            })
        }
    }
}

fn moodle_site(s: &str) -> anyhow::Result<store::MoodleSiteId> {
    store::MoodleSiteId::parse(s).ok_or_else(|| {
        anyhow::anyhow!("--site must be a site id as `moodle pair` printed it (ms_…)")
    })
}

async fn moodle(config: Option<&std::path::Path>, command: MoodleCommand) -> anyhow::Result<()> {
    match command {
        MoodleCommand::Pair {
            tenant,
            platform,
            site_url,
            ws_token_file,
            flags,
        } => {
            let settings = load(config, &flags)?;
            let ws_token = ws_token_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| {
                            format!("reading the web service token from {}", f.display())
                        })
                        .map(|t| t.trim().to_owned())
                })
                .transpose()?;
            let (master, store, scope) = open_tenant_sealed(&settings, tenant).await?;
            let paired = store
                .tenant(&scope)
                .pair_moodle_site(
                    platform,
                    &site_url,
                    ws_token.as_deref(),
                    &master,
                    &operator(),
                )
                .await
                .map_err(|e| match e {
                    store::StoreError::NotFound => {
                        anyhow::anyhow!("tenant {tenant} has no platform {platform}")
                    }
                    other => anyhow::Error::from(other).context("pairing the Moodle site"),
                })?;
            print_json(&json!({
                "lmsbridge_url": settings.public(""),
                "events_url": settings.public("moodle/events"),
                "site_id": paired.site.id,
                "secret": paired.secret.secret(),
                "platform_id": paired.site.platform_id,
                "site_url": paired.site.site_url,
                "ws_token": paired.site.has_ws_token,
            }))
        }
        MoodleCommand::Sites { tenant, json, db } => {
            let store = open_store(&load(config, &(&db).into())?).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let sites = store.tenant(&scope).moodle_sites().await?;
            print_rows(&sites, json, |s| {
                format!(
                    "{}  platform={}  {}  last_seq={}{}",
                    s.id,
                    s.platform_id,
                    s.site_url,
                    s.last_seq,
                    if s.has_ws_token { "  (reconciles)" } else { "" }
                )
            })
        }
        MoodleCommand::Unpair { tenant, site, db } => {
            let site = moodle_site(&site)?;
            let store = open_store(&load(config, &(&db).into())?).await?;
            let scope = tenant_scope(&store, tenant).await?;
            store
                .tenant(&scope)
                .unpair_moodle_site(&site, &operator())
                .await
                .map_err(|e| match e {
                    store::StoreError::NotFound => {
                        anyhow::anyhow!("tenant {tenant} has no paired site {site}")
                    }
                    other => other.into(),
                })?;
            print_json(&json!({"site_id": site, "paired": false}))
        }
        MoodleCommand::Reconcile { tenant, site, db } => {
            let site = moodle_site(&site)?;
            let settings = load(config, &(&db).into())?;
            let (master, store, scope) = open_tenant_sealed(&settings, tenant).await?;
            let reconciler = server::moodle_reconcile::MoodleReconciler::new(
                store,
                reqwest::Client::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .timeout(std::time::Duration::from_secs(60))
                    .build()?,
                master,
            );
            let report = reconciler.reconcile_site(&scope, &site).await?;
            let failed = report.courses.iter().filter(|c| c.error.is_some()).count();
            print_json(&report)?;
            anyhow::ensure!(failed == 0, "{failed} course(s) could not be reconciled");
            Ok(())
        }
    }
}

async fn keys(config: Option<&std::path::Path>, command: KeysCommand) -> anyhow::Result<()> {
    let db = match &command {
        KeysCommand::List { db, .. } | KeysCommand::Rotate { db, .. } => db,
    };
    let settings = load(config, &db.into())?;
    let master =
        server::master_key::load_or_create(settings.master_key.as_deref(), &settings.data_dir)?;
    let store = open_store(&settings).await?;
    let ring = server::keyring::Keyring::open(store, master).await?;
    match command {
        KeysCommand::List { json, .. } => {
            let statuses = ring.statuses();
            if json {
                let v: Vec<_> = statuses
                    .iter()
                    .map(|(kid, s, a, r)| json!({"kid": kid, "status": s, "activates_at": a, "retires_at": r}))
                    .collect();
                return print_json(&v);
            }
            for (kid, status, _, _) in statuses {
                println!("{kid}  {status:?}");
            }
            Ok(())
        }
        KeysCommand::Rotate {
            publish_lead,
            grace,
            ..
        } => {
            let kid = ring
                .rotate(
                    publish_lead.unwrap_or(settings.key_publish_lead_secs),
                    grace.unwrap_or(settings.key_grace_secs),
                    &operator(),
                )
                .await?;
            print_json(
                &json!({"kid": kid, "keys": ring.statuses().iter().map(|(k, s, _, _)| json!({"kid": k, "status": s})).collect::<Vec<_>>()}),
            )
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn serve(mut settings: Settings) -> anyhow::Result<()> {
    crate::logging::init(settings.log_format);
    // With no public URL configured, it follows the port actually bound (`--listen …:0`).
    let listener = crate::demo::bind(&mut settings).await?;
    let running = AppBuilder::new(settings.clone()).build().await?;
    let addr = listener.local_addr()?;
    println!(
        "lmsbridge serving on http://{addr} (public URL {})",
        settings.public_url
    );
    run_server(
        listener,
        running,
        server::router,
        settings.run_worker,
        shutdown_signal(),
    )
    .await
}

/// Serves `router(app)` until a shutdown signal, with the worker and upkeep alongside.
pub async fn run_server(
    listener: TcpListener,
    running: server::Running,
    router: impl FnOnce(server::App) -> axum::Router,
    run_worker: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = running.app.clone();
    let worker = run_worker.then(|| tokio::spawn(running.worker.run(stop_rx.clone())));
    let upkeep = tokio::spawn(app.clone().maintain(stop_rx));
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    let _ = stop_tx.send(true);
    if let Some(w) = worker {
        // The worker finishes the batch it is sending; its leases cover a hard stop.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), w).await;
    }
    upkeep.abort();
    app.store().close().await;
    Ok(())
}

async fn worker(settings: Settings) -> anyhow::Result<()> {
    crate::logging::init(settings.log_format);
    let running = AppBuilder::new(settings).build().await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(running.worker.run(stop_rx));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = task.await;
    Ok(())
}
