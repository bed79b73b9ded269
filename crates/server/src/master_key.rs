//! Finding the master key: `LMSBRIDGE_MASTER_KEY`, else a key file in the data directory,
//! created with mode 0600 on first start.

use anyhow::{Context, bail};
use std::path::Path;
use store::crypto::MasterKey;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "master.key";

/// Loads the configured key, or reads (creating if needed) the key file.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Some(k) = configured {
        return MasterKey::from_base64(k)
            .map_err(|e| anyhow::anyhow!("LMSBRIDGE_MASTER_KEY is invalid: {e}"));
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            check_permissions(&path)?;
            MasterKey::from_base64(&text)
                .map_err(|e| anyhow::anyhow!("{} is invalid: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn create(path: &Path) -> anyhow::Result<MasterKey> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    let key = MasterKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(key.to_base64().as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new master key file; back it up with the database");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create(None, path.parent().unwrap_or(Path::new(".")))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("lmsb-mk-{}", uuid::Uuid::new_v4()));
        let first = load_or_create(None, &dir).unwrap();
        let second = load_or_create(None, &dir).unwrap();
        assert_eq!(first.to_base64(), second.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            assert!(
                load_or_create(None, &dir).is_err(),
                "a world-readable key file is refused"
            );
        }
        let configured = MasterKey::generate().to_base64();
        assert_eq!(
            load_or_create(Some(&configured), &dir).unwrap().to_base64(),
            configured
        );
        assert!(load_or_create(Some("short"), &dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
