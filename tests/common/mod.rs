//! Starting the demo in-process for tests over loopback.

use lmsbridge::demo::{self, Demo};
use server::Settings;

// Not every test uses every field.
#[allow(dead_code)]
pub struct Running {
    pub demo_url: url::Url,
    pub lms: testkit::SimulatedLms,
    /// The app's store, for tests that set up more than the demo does.
    pub store: store::Store,
    /// The demo's Google Classroom step.
    pub google: lmsbridge::demo::GoogleDemo,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: std::path::PathBuf,
}

pub async fn start(database_url: Option<String>) -> Running {
    let dir = std::env::temp_dir().join(format!("lmsbridge-e2e-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for("127.0.0.1:0".parse().unwrap(), dir.clone());
    if let Some(url) = database_url {
        settings.database_url = url;
    }
    let listener = demo::bind(&mut settings).await.unwrap();
    let d = Demo::prepare(settings).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (lms, product) = (d.lms.clone(), d.product.clone());
    let store = d.running.app.store().clone();
    let google = d.google.clone();
    let server = tokio::spawn(lmsbridge::cli::run_server(
        listener,
        d.running,
        move |app| Demo::router(&lms, &product, app),
        true,
        async {
            let _ = stopped.await;
        },
    ));
    // The sample product registers its catalog through the API once the server answers.
    assert!(
        d.product
            .catalog_ready(std::time::Duration::from_secs(30))
            .await,
        "the sample product registered its catalog"
    );
    Running {
        demo_url: d.start_url,
        lms: d.lms,
        store,
        google,
        stop,
        server,
        dir,
    }
}

pub async fn stop(r: Running) {
    let _ = r.stop.send(());
    r.server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(r.dir);
}
