//! `lmsbridge demo`: the gateway, a simulated LMS at `/lms` and a sample product at
//! `/product`, in one process, registered with each other. Open the printed URL, launch an
//! activity as a student, grade yourself, and watch the grade arrive in the LMS gradebook.
//! As the teacher, place the product's catalog items into the course by LTI Deep Linking
//! (`/lms/deep_linking`): each graded item gets its own gradebook column.

mod google;
mod google_addons;
mod product;

use anyhow::Context;
use domain::{Actor, PlatformKind};
use server::{AppBuilder, Settings};
use store::NewPlatform;
use testkit::{LmsConfig, SimulatedLms, ToolRegistration};
use tokio::net::TcpListener;
use url::Url;

pub use google::{GoogleDemo, GoogleOutcome};
pub use product::{CATALOG, DemoItem, SampleProduct};

/// The demo tenant's name; reused across restarts.
pub const DEMO_TENANT: &str = "lmsbridge demo school";
const DEMO_CLIENT_ID: &str = "lmsbridge-demo";
const DEMO_DEPLOYMENT: &str = "demo-deployment-1";

/// A prepared demo: the app with the extra routes, ready to serve.
#[derive(Debug)]
pub struct Demo {
    pub running: server::Running,
    pub lms: SimulatedLms,
    pub product: SampleProduct,
    /// The page to open.
    pub start_url: Url,
    /// The course page where the teacher adds the product's items by deep linking.
    pub deep_linking_url: Url,
    /// The Google Classroom step, run in the background once lmsbridge serves.
    pub google: GoogleDemo,
}

impl Demo {
    /// Builds the app and registers the simulated LMS and the sample product with it.
    /// `settings.public_url` must already point at where the demo will be served.
    pub async fn prepare(mut settings: Settings) -> anyhow::Result<Self> {
        let google = GoogleDemo::prepare(&mut settings).await?;
        let running = AppBuilder::new(settings.clone()).build().await?;
        let tool = ToolRegistration {
            client_id: DEMO_CLIENT_ID.into(),
            deployment_id: DEMO_DEPLOYMENT.into(),
            login_url: settings.public("lti/login"),
            launch_url: settings.public("lti/launch"),
            jwks_url: settings.public(".well-known/jwks.json"),
        };
        let lms = SimulatedLms::try_new(LmsConfig::new(settings.public("lms/"), tool))
            .context("starting the simulated LMS")?;
        let store = running.app.store();
        let actor = Actor::system("demo");
        let product_launch = settings.public("product/launch");
        let (scope, api_key) = match store.find_tenant_by_name(DEMO_TENANT).await? {
            Some(scope) => {
                let key = store
                    .issue_api_key(&scope, Some("demo product"), &actor)
                    .await?;
                store
                    .tenant(&scope)
                    .set_launch_url(Some(&product_launch), &actor)
                    .await?;
                (scope, key)
            }
            None => {
                let (tenant, key) = store
                    .create_tenant(DEMO_TENANT, Some(&product_launch), &actor)
                    .await?;
                (store.tenant_scope(tenant.id).await?, key)
            }
        };
        let existing = store
            .find_platforms(&lms.issuer(), Some(DEMO_CLIENT_ID))
            .await?;
        if existing.is_empty() {
            store
                .tenant(&scope)
                .add_platform(
                    &NewPlatform {
                        kind: PlatformKind::Lti,
                        issuer: lms.issuer(),
                        client_id: DEMO_CLIENT_ID.into(),
                        auth_url: lms.auth_url(),
                        token_url: lms.token_url(),
                        jwks_url: lms.jwks_url(),
                        token_audience: None,
                        accept_new_deployments: false,
                        deployment_ids: vec![DEMO_DEPLOYMENT.into()],
                    },
                    &actor,
                )
                .await?;
        } else {
            anyhow::ensure!(
                existing.iter().all(|r| r.scope == scope),
                "the demo LMS at {} is registered to another tenant",
                lms.issuer()
            );
        }
        let product = SampleProduct::new(
            settings.public(""),
            api_key.secret().to_owned(),
            lms.gradebook_url(),
            settings.public("product/"),
        )?;
        // Through the product API, like any product; it completes once lmsbridge serves.
        product.register_catalog_in_background();
        google.configure(&running.app, &scope).await?;
        google.run_in_background(settings.public(""), api_key.secret().to_owned());
        google_addons::run_in_background(running.app.clone(), scope.clone(), google.clone());
        Ok(Self {
            google,
            start_url: lms.home_url(),
            deep_linking_url: lms.deep_linking_page_url(),
            running,
            lms,
            product,
        })
    }

    /// The full router: lmsbridge, the LMS under `/lms`, the product under `/product`.
    pub fn router(lms: &SimulatedLms, product: &SampleProduct, app: server::App) -> axum::Router {
        server::router(app)
            .nest("/lms", lms.router())
            .nest("/product", product.router())
    }
}

/// Binds the listen address and points the public URL at it when it was not configured.
pub async fn bind(settings: &mut Settings) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (is another process using it? try --listen 127.0.0.1:8081)",
            settings.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let default_public = Url::parse(&format!("http://{}/", settings.listen))?;
    if settings.public_url == default_public {
        settings.public_url = Url::parse(&format!("http://{addr}/"))?;
    }
    settings.listen = addr;
    Ok(listener)
}

/// Runs the demo until Ctrl-C.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    crate::logging::init(settings.log_format);
    let listener = bind(&mut settings).await?;
    let demo = Demo::prepare(settings).await?;
    println!();
    println!("  lmsbridge demo is running.");
    println!(
        "  Open {} and launch an activity as a student.",
        demo.start_url
    );
    println!(
        "  As the teacher, add the product's activities at {}",
        demo.deep_linking_url
    );
    println!();
    let Demo {
        running,
        lms,
        product,
        ..
    } = demo;
    crate::cli::run_server(
        listener,
        running,
        move |app| Demo::router(&lms, &product, app),
        true,
        crate::cli::shutdown_signal(),
    )
    .await
}
