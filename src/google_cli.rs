//! `lmsbridge google …`: a tenant's Google OAuth client, its grants' state, and connect links.

use super::{open_store, open_tenant_sealed, operator, print_json, tenant_scope};
use crate::settings::{SettingsFlags, load};
use anyhow::Context;
use clap::Subcommand;
use domain::TenantId;
use serde_json::json;
use server::google::{ConnectLink, Feature, LINK_TTL_SECS, scopes_for};
use std::path::{Path, PathBuf};
use store::google::{NewGoogleClient, SecretString};

#[derive(Debug, Subcommand)]
pub enum GoogleCommand {
    /// Set the tenant's Google OAuth client (a "Web application" client of your Google Cloud
    /// project): creates its Google Classroom platform the first time. Prints the redirect
    /// URI to register on the client
    Configure {
        #[arg(long)]
        tenant: TenantId,
        /// The OAuth client id (….apps.googleusercontent.com)
        #[arg(long)]
        client_id: String,
        /// A file holding the client secret (read, trimmed, never printed)
        #[arg(long, value_name = "PATH")]
        client_secret_file: PathBuf,
        /// The Cloud project number (Google Cloud console, project info)
        #[arg(long)]
        project_number: Option<String>,
        #[command(flatten)]
        flags: SettingsFlags,
    },
    /// The tenant's Google setup, every teacher grant (active or revoked, with Google's
    /// reason) and the linked courses with their access state
    Status {
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        flags: SettingsFlags,
    },
    /// A fifteen-minute link a teacher opens to connect their Google account
    ConnectLink {
        #[arg(long)]
        tenant: TenantId,
        /// Features to ask access for: roster, coursework (default: both)
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// The teacher's Google email, to preselect the account
        #[arg(long)]
        login_hint: Option<String>,
        #[command(flatten)]
        flags: SettingsFlags,
    },
}

fn feature(name: &str) -> anyhow::Result<Feature> {
    match name.trim() {
        "roster" => Ok(Feature::Roster),
        "coursework" => Ok(Feature::Coursework),
        other => anyhow::bail!("unknown feature {other:?}: expected roster or coursework"),
    }
}

pub async fn google(config: Option<&Path>, command: GoogleCommand) -> anyhow::Result<()> {
    match command {
        GoogleCommand::Configure {
            tenant,
            client_id,
            client_secret_file,
            project_number,
            flags,
        } => {
            let settings = load(config, &flags)?;
            let secret = std::fs::read_to_string(&client_secret_file).with_context(|| {
                format!(
                    "reading the client secret from {}",
                    client_secret_file.display()
                )
            })?;
            let secret = secret.trim();
            anyhow::ensure!(!secret.is_empty(), "the client secret file is empty");
            let (master, store, scope) = open_tenant_sealed(&settings, tenant).await?;
            let platform = store
                .tenant(&scope)
                .configure_google_client(
                    &NewGoogleClient {
                        client_id: client_id.trim().to_owned(),
                        client_secret: SecretString::new(secret),
                        project_number,
                        authorization_url: settings.google_authorization_url.clone(),
                        token_url: settings.google_token_url.clone(),
                        certs_url: settings.google_userinfo_url.clone(),
                    },
                    &master,
                    &operator(),
                )
                .await
                .context("storing the Google OAuth client")?;
            print_json(&json!({
                "platform_id": platform.id,
                "client_id": platform.client_id,
                "redirect_uri": settings.public("google/oauth/callback"),
                "scopes": {
                    "roster": scopes_for(&[Feature::Roster]),
                    "coursework": scopes_for(&[Feature::Coursework]),
                },
            }))
        }
        GoogleCommand::Status { tenant, flags } => {
            let settings = load(config, &flags)?;
            let store = open_store(&settings).await?;
            let scope = tenant_scope(&store, tenant).await?;
            let t = store.tenant(&scope);
            let Some(platform) = t.google_platform().await? else {
                return print_json(&json!({"configured": false}));
            };
            print_json(&json!({
                "configured": true,
                "platform_id": platform.id,
                "client_id": platform.client_id,
                "redirect_uri": settings.public("google/oauth/callback"),
                "grants": t.google_grants(platform.id).await?,
                "courses": t.google_courses(platform.id).await?,
            }))
        }
        GoogleCommand::ConnectLink {
            tenant,
            features,
            login_hint,
            flags,
        } => {
            let settings = load(config, &flags)?;
            let mut wanted = features
                .iter()
                .map(|f| feature(f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if wanted.is_empty() {
                wanted = vec![Feature::Roster, Feature::Coursework];
            }
            let (master, store, scope) = open_tenant_sealed(&settings, tenant).await?;
            let platform = store
                .tenant(&scope)
                .google_platform()
                .await?
                .context("Google Classroom is not configured for this tenant: run lmsbridge google configure first")?;
            let expires_at = store::now_micros() + LINK_TTL_SECS * 1_000_000;
            let token = ConnectLink {
                tenant,
                platform: platform.id,
                features: wanted,
                login_hint,
                expires_at,
            }
            .seal(&master)?;
            let mut url = settings.public("google/oauth/start");
            url.query_pairs_mut().append_pair("link", &token);
            print_json(&json!({"url": url, "expires_at_micros": expires_at}))
        }
    }
}
