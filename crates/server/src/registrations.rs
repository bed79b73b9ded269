//! Platform registrations as launches need them, cached briefly in memory.
//!
//! Every login and launch looks its registration up; on SQLite each lookup costs a hop to
//! the database thread, and registrations change rarely. Found registrations are kept for a
//! short time (an edit shows within it everywhere); a miss is never cached, so a platform
//! registered a moment ago resolves at once. Deployments are not cached: they are checked in
//! the launch's own transaction.

use domain::PlatformId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{PlatformRegistration, Store, StoreError};
use url::Url;

/// A registration with what the launch needs of its tenant.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub registration: PlatformRegistration,
    /// The tenant's product page, or `None` for lmsbridge's summary page.
    pub launch_url: Option<Url>,
}

type LoginKey = (String, Option<String>);
/// Entries with the time they were read.
type Timed<K, T> = Mutex<HashMap<K, (Instant, T)>>;

/// The cache.
#[derive(Debug)]
pub struct Registrations {
    store: Store,
    ttl: Duration,
    by_id: Timed<PlatformId, Arc<Resolved>>,
    by_login: Timed<LoginKey, Vec<Arc<Resolved>>>,
}

/// Entries kept at most, per map; past it the map is cleared (a crude bound on memory when
/// logins arrive for very many registrations).
const MAX_ENTRIES: usize = 10_000;

impl Registrations {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            by_id: Mutex::default(),
            by_login: Mutex::default(),
        }
    }

    async fn resolve(
        &self,
        registration: PlatformRegistration,
    ) -> Result<Arc<Resolved>, StoreError> {
        let tenant = self.store.tenant(&registration.scope).tenant().await?;
        let resolved = Arc::new(Resolved {
            registration,
            launch_url: tenant.launch_url,
        });
        // A disabled registration is not cached, so that enabling it takes effect at once.
        if !resolved.registration.platform.enabled {
            return Ok(resolved);
        }
        let mut by_id = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if by_id.len() >= MAX_ENTRIES {
            by_id.clear();
        }
        by_id.insert(
            resolved.registration.platform.id,
            (Instant::now(), resolved.clone()),
        );
        Ok(resolved)
    }

    /// A registration by id (a per-registration URL, or the platform a login state names).
    pub async fn by_id(&self, id: PlatformId) -> Result<Option<Arc<Resolved>>, StoreError> {
        if let Some((at, r)) = self
            .by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            && at.elapsed() < self.ttl
        {
            return Ok(Some(r.clone()));
        }
        match self.store.platform_registration(id).await? {
            Some(reg) => Ok(Some(self.resolve(reg).await?)),
            None => Ok(None),
        }
    }

    /// The registrations a login names by issuer and, if sent, client_id.
    pub async fn for_login(
        &self,
        issuer: &str,
        client_id: Option<&str>,
    ) -> Result<Vec<Arc<Resolved>>, StoreError> {
        let key = (issuer.to_owned(), client_id.map(str::to_owned));
        if let Some((at, found)) = self
            .by_login
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(found.clone());
        }
        let mut found = Vec::new();
        for reg in self.store.find_platforms(issuer, client_id).await? {
            found.push(self.resolve(reg).await?);
        }
        if !found.is_empty() && found.iter().all(|r| r.registration.platform.enabled) {
            let mut by_login = self.by_login.lock().unwrap_or_else(|e| e.into_inner());
            if by_login.len() >= MAX_ENTRIES {
                by_login.clear();
            }
            by_login.insert(key, (Instant::now(), found.clone()));
        }
        Ok(found)
    }
}
