//! The product's catalog: the content a teacher can place into a course by LTI Deep Linking
//! 2.0 (each item becomes one content item of DL §3), and the single use of the picker
//! tokens that bind a deep linking request to lmsbridge's picker page.
//!
//! Items are never deleted, only archived: links a teacher already placed keep naming them.

use crate::audit::NewAuditEntry;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::{TenantStore, now_micros};
use domain::Actor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use url::Url;

/// A catalog item's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CatalogItemId(uuid::Uuid);

impl CatalogItemId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl fmt::Display for CatalogItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CatalogItemId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// What an item becomes in a deep linking response: the content item types of DL §3, named
/// as `accept_types` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CatalogItemType {
    /// An activity that launches the product through lmsbridge, optionally graded.
    #[serde(rename = "ltiResourceLink")]
    LtiResourceLink,
    #[serde(rename = "link")]
    Link,
    /// An HTML fragment (the item's `text`) the platform shows in its page.
    #[serde(rename = "html")]
    Html,
    #[serde(rename = "file")]
    File,
    #[serde(rename = "image")]
    Image,
}

impl CatalogItemType {
    pub const ALL: [Self; 5] = [
        Self::LtiResourceLink,
        Self::Link,
        Self::Html,
        Self::File,
        Self::Image,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::LtiResourceLink => "ltiResourceLink",
            Self::Link => "link",
            Self::Html => "html",
            Self::File => "file",
            Self::Image => "image",
        }
    }
}

impl FromStr for CatalogItemType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                "type must be one of ltiResourceLink, link, html, file, image".to_owned()
            })
    }
}

/// An item of a tenant's catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogItem {
    pub id: CatalogItemId,
    #[serde(rename = "type")]
    pub item_type: CatalogItemType,
    pub title: String,
    pub text: Option<String>,
    /// Where the item lives in the product (the tenant's launch URL unless given).
    pub url: Url,
    /// Custom parameters the platform sends back with every launch of a placed item.
    pub custom: BTreeMap<String, String>,
    /// The gradebook column's maximum, for graded resource links.
    pub score_maximum: Option<f64>,
    pub archived: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An item as the product registers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCatalogItem {
    pub item_type: CatalogItemType,
    pub title: String,
    pub text: Option<String>,
    /// `None`: the tenant's launch URL.
    pub url: Option<Url>,
    pub custom: BTreeMap<String, String>,
    pub score_maximum: Option<f64>,
}

/// A partial update; `None` leaves a field as it is, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogItemChanges {
    pub item_type: Option<CatalogItemType>,
    pub title: Option<String>,
    pub text: Option<Option<String>>,
    pub url: Option<Url>,
    pub custom: Option<BTreeMap<String, String>>,
    pub score_maximum: Option<Option<f64>>,
    pub archived: Option<bool>,
}

/// Custom parameter names starting with this are lmsbridge's own (it adds the item's id).
pub const RESERVED_CUSTOM_PREFIX: &str = "lmsbridge_";
const MAX_TITLE: usize = 200;
const MAX_TEXT: usize = 4000;
const MAX_CUSTOM: usize = 50;
const MAX_CUSTOM_KEY: usize = 64;
const MAX_CUSTOM_VALUE: usize = 1000;
const MAX_SCORE: f64 = 1_000_000.0;

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Invalid(message.into())
}

/// Every rule an item must keep, checked on the item as it would be stored.
fn validate(item: &CatalogItem) -> Result<(), StoreError> {
    let title = item.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        return Err(invalid(format!(
            "title must be 1 to {MAX_TITLE} characters"
        )));
    }
    if item
        .text
        .as_deref()
        .is_some_and(|t| t.chars().count() > MAX_TEXT)
    {
        return Err(invalid(format!(
            "text must be at most {MAX_TEXT} characters"
        )));
    }
    if item.item_type == CatalogItemType::Html
        && item.text.as_deref().is_none_or(|t| t.trim().is_empty())
    {
        return Err(invalid(
            "an html item needs its HTML in text, and text is empty",
        ));
    }
    if !matches!(item.url.scheme(), "http" | "https") || item.url.host().is_none() {
        return Err(invalid("url must be an absolute http or https URL"));
    }
    if item.custom.len() > MAX_CUSTOM {
        return Err(invalid(format!(
            "custom may hold at most {MAX_CUSTOM} parameters"
        )));
    }
    for (key, value) in &item.custom {
        // LTI custom parameter names: platforms pass these through as claim keys and some
        // (Canvas) as variable names, so keep to letters, digits and underscores.
        if key.is_empty()
            || key.len() > MAX_CUSTOM_KEY
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid(format!(
                "custom parameter names must be 1 to {MAX_CUSTOM_KEY} letters, digits or underscores"
            )));
        }
        if key.to_ascii_lowercase().starts_with(RESERVED_CUSTOM_PREFIX) {
            return Err(invalid(format!(
                "custom parameter names starting with {RESERVED_CUSTOM_PREFIX} are reserved"
            )));
        }
        if value.chars().count() > MAX_CUSTOM_VALUE {
            return Err(invalid(format!(
                "custom parameter values must be at most {MAX_CUSTOM_VALUE} characters"
            )));
        }
    }
    match (item.item_type, item.score_maximum) {
        (_, None) => {}
        (CatalogItemType::LtiResourceLink, Some(max))
            if max.is_finite() && max > 0.0 && max <= MAX_SCORE => {}
        (CatalogItemType::LtiResourceLink, Some(_)) => {
            return Err(invalid(format!(
                "score_maximum must be a number above 0 and at most {MAX_SCORE}"
            )));
        }
        (_, Some(_)) => {
            return Err(invalid(
                "score_maximum is only for ltiResourceLink items (other items are not graded)",
            ));
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: String,
    item_type: String,
    title: String,
    text: Option<String>,
    url: String,
    custom: String,
    score_maximum: Option<f64>,
    archived: bool,
    created_at: i64,
    updated_at: i64,
}

const ITEM_COLUMNS: &str =
    "id, item_type, title, text, url, custom, score_maximum, archived, created_at, updated_at";

impl TryFrom<ItemRow> for CatalogItem {
    type Error = StoreError;
    fn try_from(r: ItemRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("catalog item {what}"));
        Ok(Self {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            item_type: r.item_type.parse().map_err(|_| corrupt("type"))?,
            title: r.title,
            text: r.text,
            url: Url::parse(&r.url).map_err(|_| corrupt("url"))?,
            custom: serde_json::from_str(&r.custom).map_err(|_| corrupt("custom"))?,
            score_maximum: r.score_maximum,
            archived: r.archived,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// What the audit log keeps of an item: everything but its text.
fn audit_detail(item: &CatalogItem) -> serde_json::Value {
    serde_json::json!({
        "type": item.item_type, "title": item.title, "url": item.url,
        "custom_keys": item.custom.keys().collect::<Vec<_>>(),
        "score_maximum": item.score_maximum, "archived": item.archived,
    })
}

/// Writes an item's row (insert or full update) and its audit entry in one transaction.
/// `$extra` values are bound after the eleven columns (an update's `$12`).
macro_rules! write_item {
    ($db:expr, $sql:expr, $item:expr, $tenant:expr, $audit:expr $(, $extra:expr)*) => {{
        let item: &CatalogItem = $item;
        let custom = serde_json::to_string(&item.custom)
            .map_err(|_| StoreError::Invalid("custom is not serialisable".into()))?;
        on_db!($db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query($sql)
                .bind(item.id.to_string())
                .bind($tenant.to_string())
                .bind(item.item_type.as_str())
                .bind(&item.title)
                .bind(&item.text)
                .bind(item.url.as_str())
                .bind(&custom)
                .bind(item.score_maximum)
                .bind(item.archived)
                .bind(item.created_at)
                .bind(item.updated_at)
                $(.bind($extra))*
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n != 1 {
                // The row was read a moment ago: it changed (or went) in between.
                return Err(StoreError::Conflict(
                    "the catalog item was changed at the same time; read it again and retry",
                ));
            }
            audit_append!(tx, $audit);
            tx.commit().await?;
        });
    }};
}

impl TenantStore<'_> {
    /// Adds an item to this tenant's catalog, audited. A missing URL becomes the tenant's
    /// launch URL.
    pub async fn create_catalog_item(
        &self,
        new: &NewCatalogItem,
        actor: &Actor,
    ) -> Result<CatalogItem, StoreError> {
        let url = match &new.url {
            Some(u) => u.clone(),
            None => self.tenant().await?.launch_url.ok_or_else(|| {
                invalid("url is required: the tenant has no launch URL to default to")
            })?,
        };
        let now = now_micros();
        let item = CatalogItem {
            id: CatalogItemId::generate(),
            item_type: new.item_type,
            title: new.title.trim().to_owned(),
            text: new.text.clone(),
            url,
            custom: new.custom.clone(),
            score_maximum: new.score_maximum,
            archived: false,
            created_at: now,
            updated_at: now,
        };
        validate(&item)?;
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "catalog.item_created",
            format!("catalog_item:{}", item.id),
            audit_detail(&item),
        );
        write_item!(
            self.db,
            "INSERT INTO catalog_items (id, tenant_id, item_type, title, text, url, custom, score_maximum, archived, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &item,
            tenant,
            &audit
        );
        Ok(item)
    }

    /// This tenant's catalog, oldest first; archived items only when asked for.
    pub async fn catalog_items(
        &self,
        include_archived: bool,
    ) -> Result<Vec<CatalogItem>, StoreError> {
        let rows: Vec<ItemRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ITEM_COLUMNS} FROM catalog_items WHERE tenant_id = $1 AND archived IN ($2, $3) ORDER BY created_at, id"
            )))
            .bind(self.scope.tenant_id().to_string())
            .bind(false)
            .bind(include_archived)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(CatalogItem::try_from).collect()
    }

    /// One of this tenant's items, archived or not.
    pub async fn catalog_item(&self, id: CatalogItemId) -> Result<CatalogItem, StoreError> {
        let row: Option<ItemRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ITEM_COLUMNS} FROM catalog_items WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Changes an item, audited; the result must keep every rule a new item keeps.
    pub async fn update_catalog_item(
        &self,
        id: CatalogItemId,
        changes: &CatalogItemChanges,
        actor: &Actor,
    ) -> Result<CatalogItem, StoreError> {
        let mut item = self.catalog_item(id).await?;
        let based_on = item.updated_at;
        if let Some(t) = changes.item_type {
            item.item_type = t;
        }
        if let Some(title) = &changes.title {
            item.title = title.trim().to_owned();
        }
        if let Some(text) = &changes.text {
            item.text.clone_from(text);
        }
        if let Some(url) = &changes.url {
            item.url = url.clone();
        }
        if let Some(custom) = &changes.custom {
            item.custom.clone_from(custom);
        }
        if let Some(max) = changes.score_maximum {
            item.score_maximum = max;
        }
        if let Some(archived) = changes.archived {
            item.archived = archived;
        }
        item.updated_at = now_micros().max(item.updated_at + 1);
        validate(&item)?;
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "catalog.item_updated",
            format!("catalog_item:{}", item.id),
            audit_detail(&item),
        );
        write_item!(
            self.db,
            "UPDATE catalog_items SET item_type = $3, title = $4, text = $5, url = $6, custom = $7, \
             score_maximum = $8, archived = $9, created_at = $10, updated_at = $11 \
             WHERE id = $1 AND tenant_id = $2 AND updated_at = $12",
            &item,
            tenant,
            &audit,
            based_on
        );
        Ok(item)
    }

    /// Archives an item: it leaves the picker, and links already placed keep working.
    pub async fn archive_catalog_item(
        &self,
        id: CatalogItemId,
        actor: &Actor,
    ) -> Result<CatalogItem, StoreError> {
        self.update_catalog_item(
            id,
            &CatalogItemChanges {
                archived: Some(true),
                ..CatalogItemChanges::default()
            },
            actor,
        )
        .await
    }

    /// Marks a deep linking picker token used, with the audit entry of what it sent, in one
    /// transaction. False when the token was used before: nothing is written then.
    /// `expires_at` is when the token stops opening anyway; the row is kept until then.
    pub async fn use_picker_token(
        &self,
        jti: &str,
        expires_at: i64,
        actor: &Actor,
        subject: String,
        detail: serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.use_picker_token_as(
            "deep_linking.response_sent",
            jti,
            expires_at,
            actor,
            subject,
            detail,
        )
        .await
    }

    /// [`Self::use_picker_token`] for another picker (a Classroom add-on's attachment
    /// discovery), audited under its own `action`.
    pub async fn use_picker_token_as(
        &self,
        action: &'static str,
        jti: &str,
        expires_at: i64,
        actor: &Actor,
        subject: String,
        detail: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let now = now_micros();
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(tenant, actor.clone(), action, subject, detail);
        let first_use = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // Expired tokens no longer open, so their rows have done their job.
            sqlx::query("DELETE FROM deep_linking_picks WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query(
                "INSERT INTO deep_linking_picks (jti, tenant_id, used_at, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(tenant.to_string())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                audit_append!(tx, &audit);
            }
            tx.commit().await?;
            n == 1
        });
        Ok(first_use)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::testing::TestDatabase;

    fn actor() -> Actor {
        Actor::system("test")
    }

    fn quiz() -> NewCatalogItem {
        NewCatalogItem {
            item_type: CatalogItemType::LtiResourceLink,
            title: "  Enzyme quiz ".into(),
            text: Some("Ten questions".into()),
            url: None,
            custom: BTreeMap::from([("unit".to_owned(), "3".to_owned())]),
            score_maximum: Some(10.0),
        }
    }

    async fn tenant(store: &Store, name: &str, launch_url: Option<&str>) -> crate::TenantScope {
        let url = launch_url.map(|u| Url::parse(u).unwrap());
        let (_, key) = store
            .create_tenant(name, url.as_ref(), &actor())
            .await
            .unwrap();
        store
            .authenticate_api_key(key.secret())
            .await
            .unwrap()
            .unwrap()
    }

    async fn each_db<F, Fut>(test: F)
    where
        F: Fn(Store) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        for db in TestDatabase::all().await.unwrap() {
            test(db.store.clone()).await;
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn items_are_created_listed_changed_and_archived_with_audit() {
        each_db(|store| async move {
            let scope = tenant(&store, "a", Some("https://product.example/launch")).await;
            let t = store.tenant(&scope);
            let item = t.create_catalog_item(&quiz(), &actor()).await.unwrap();
            assert_eq!(item.title, "Enzyme quiz");
            assert_eq!(item.url.as_str(), "https://product.example/launch");
            assert!(!item.archived);
            assert_eq!(t.catalog_item(item.id).await.unwrap(), item);
            let mut link = quiz();
            link.item_type = CatalogItemType::Link;
            link.score_maximum = None;
            link.url = Some(Url::parse("https://product.example/reading/1").unwrap());
            let link = t.create_catalog_item(&link, &actor()).await.unwrap();
            assert_eq!(
                t.catalog_items(false).await.unwrap(),
                vec![item.clone(), link.clone()]
            );

            let changed = t
                .update_catalog_item(
                    item.id,
                    &CatalogItemChanges {
                        title: Some("Enzyme quiz (v2)".into()),
                        text: Some(None),
                        score_maximum: Some(Some(20.0)),
                        ..CatalogItemChanges::default()
                    },
                    &actor(),
                )
                .await
                .unwrap();
            assert_eq!(changed.title, "Enzyme quiz (v2)");
            assert_eq!(changed.text, None);
            assert_eq!(changed.score_maximum, Some(20.0));
            assert_eq!(changed.custom, item.custom, "untouched fields stay");
            assert!(changed.updated_at > item.updated_at);
            assert_eq!(t.catalog_item(item.id).await.unwrap(), changed);

            let archived = t.archive_catalog_item(link.id, &actor()).await.unwrap();
            assert!(archived.archived);
            assert_eq!(t.catalog_items(false).await.unwrap(), vec![changed.clone()]);
            assert_eq!(t.catalog_items(true).await.unwrap().len(), 2);
            // Still readable by id: placed links keep naming it.
            assert!(t.catalog_item(link.id).await.unwrap().archived);

            let actions: Vec<String> = t
                .audit_entries()
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .filter(|a| a.starts_with("catalog."))
                .collect();
            assert_eq!(
                actions,
                [
                    "catalog.item_created",
                    "catalog.item_created",
                    "catalog.item_updated",
                    "catalog.item_updated"
                ]
            );
            assert!(
                store
                    .verify_audit(None)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.is_intact())
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_change_based_on_a_stale_read_is_refused_not_lost() {
        each_db(|store| async move {
            let scope = tenant(&store, "a", Some("https://product.example/launch")).await;
            let t = store.tenant(&scope);
            let item = t.create_catalog_item(&quiz(), &actor()).await.unwrap();
            // Another writer got in between this update's read and its write.
            store
                .execute_unchecked(&format!(
                    "UPDATE catalog_items SET updated_at = updated_at + 5, title = 'theirs' WHERE id = '{}'",
                    item.id
                ))
                .await
                .unwrap();
            let mut stale = item.clone();
            stale.title = "mine".into();
            let audit = NewAuditEntry::tenant(
                scope.tenant_id(),
                actor(),
                "catalog.item_updated",
                format!("catalog_item:{}", item.id),
                audit_detail(&stale),
            );
            let write = async {
                write_item!(
                    t.db,
                    "UPDATE catalog_items SET item_type = $3, title = $4, text = $5, url = $6, custom = $7, \
                     score_maximum = $8, archived = $9, created_at = $10, updated_at = $11 \
                     WHERE id = $1 AND tenant_id = $2 AND updated_at = $12",
                    &stale,
                    scope.tenant_id(),
                    &audit,
                    item.updated_at
                );
                Ok::<(), StoreError>(())
            };
            assert!(matches!(write.await, Err(StoreError::Conflict(_))));
            assert_eq!(t.catalog_item(item.id).await.unwrap().title, "theirs");
            // A change based on a fresh read goes through.
            let changed = t
                .update_catalog_item(
                    item.id,
                    &CatalogItemChanges {
                        title: Some("mine".into()),
                        ..CatalogItemChanges::default()
                    },
                    &actor(),
                )
                .await
                .unwrap();
            assert_eq!(changed.title, "mine");
        })
        .await;
    }

    #[tokio::test]
    async fn invalid_items_are_refused_and_nothing_is_written() {
        each_db(|store| async move {
            let with_url = tenant(&store, "a", Some("https://product.example/launch")).await;
            let without_url = tenant(&store, "b", None).await;
            let t = store.tenant(&with_url);
            let cases: Vec<(NewCatalogItem, &str)> = vec![
                (
                    NewCatalogItem {
                        title: " ".into(),
                        ..quiz()
                    },
                    "title",
                ),
                (
                    NewCatalogItem {
                        url: Some(Url::parse("ftp://files.example/x").unwrap()),
                        ..quiz()
                    },
                    "http or https",
                ),
                (
                    NewCatalogItem {
                        url: Some(Url::parse("javascript:alert(1)").unwrap()),
                        ..quiz()
                    },
                    "http or https",
                ),
                (
                    NewCatalogItem {
                        score_maximum: Some(0.0),
                        ..quiz()
                    },
                    "above 0",
                ),
                (
                    NewCatalogItem {
                        score_maximum: Some(f64::INFINITY),
                        ..quiz()
                    },
                    "above 0",
                ),
                (
                    NewCatalogItem {
                        item_type: CatalogItemType::Link,
                        ..quiz()
                    },
                    "only for ltiResourceLink",
                ),
                (
                    NewCatalogItem {
                        item_type: CatalogItemType::Html,
                        text: None,
                        score_maximum: None,
                        ..quiz()
                    },
                    "html item",
                ),
                (
                    NewCatalogItem {
                        custom: BTreeMap::from([("bad key".to_owned(), "v".to_owned())]),
                        ..quiz()
                    },
                    "letters, digits or underscores",
                ),
                (
                    NewCatalogItem {
                        custom: BTreeMap::from([(
                            "LMSBRIDGE_catalog_item".to_owned(),
                            "x".to_owned(),
                        )]),
                        ..quiz()
                    },
                    "reserved",
                ),
            ];
            for (bad, expected) in cases {
                match t.create_catalog_item(&bad, &actor()).await {
                    Err(StoreError::Invalid(m)) => {
                        assert!(m.contains(expected), "{m:?} should mention {expected:?}")
                    }
                    other => panic!("{bad:?} was not refused: {other:?}"),
                }
            }
            assert!(t.catalog_items(true).await.unwrap().is_empty());
            match store
                .tenant(&without_url)
                .create_catalog_item(&quiz(), &actor())
                .await
            {
                Err(StoreError::Invalid(m)) => assert!(m.contains("launch URL"), "{m}"),
                other => panic!("{other:?}"),
            }
            // An update that would break a rule leaves the item as it was.
            let item = t.create_catalog_item(&quiz(), &actor()).await.unwrap();
            assert!(matches!(
                t.update_catalog_item(
                    item.id,
                    &CatalogItemChanges {
                        item_type: Some(CatalogItemType::Image),
                        ..CatalogItemChanges::default()
                    },
                    &actor()
                )
                .await,
                Err(StoreError::Invalid(_))
            ));
            assert_eq!(t.catalog_item(item.id).await.unwrap(), item);
        })
        .await;
    }

    #[tokio::test]
    async fn one_tenant_cannot_read_change_or_archive_another_tenants_items() {
        each_db(|store| async move {
            let a = tenant(&store, "a", Some("https://a.example/launch")).await;
            let b = tenant(&store, "b", Some("https://b.example/launch")).await;
            let (ta, tb) = (store.tenant(&a), store.tenant(&b));
            let item_a = ta.create_catalog_item(&quiz(), &actor()).await.unwrap();
            let item_b = tb.create_catalog_item(&quiz(), &actor()).await.unwrap();

            assert_eq!(ta.catalog_items(true).await.unwrap(), vec![item_a.clone()]);
            assert_eq!(tb.catalog_items(true).await.unwrap(), vec![item_b.clone()]);
            assert!(matches!(
                ta.catalog_item(item_b.id).await,
                Err(StoreError::NotFound)
            ));
            assert!(matches!(
                ta.update_catalog_item(
                    item_b.id,
                    &CatalogItemChanges {
                        title: Some("taken".into()),
                        ..CatalogItemChanges::default()
                    },
                    &actor()
                )
                .await,
                Err(StoreError::NotFound)
            ));
            assert!(matches!(
                ta.archive_catalog_item(item_b.id, &actor()).await,
                Err(StoreError::NotFound)
            ));
            assert_eq!(tb.catalog_item(item_b.id).await.unwrap(), item_b);
            // Each item's audit entry is on its own tenant's chain only.
            let on_a: Vec<String> = ta
                .audit_entries()
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.subject)
                .collect();
            assert!(on_a.contains(&format!("catalog_item:{}", item_a.id)));
            assert!(!on_a.contains(&format!("catalog_item:{}", item_b.id)));
        })
        .await;
    }

    #[tokio::test]
    async fn a_picker_token_is_used_once_and_audited_once() {
        each_db(|store| async move {
            let a = tenant(&store, "a", None).await;
            let t = store.tenant(&a);
            let until = now_micros() + 60_000_000;
            let detail = serde_json::json!({"items": 2});
            assert!(
                t.use_picker_token("jti-1", until, &actor(), "launch:x".into(), detail.clone())
                    .await
                    .unwrap()
            );
            assert!(
                !t.use_picker_token("jti-1", until, &actor(), "launch:x".into(), detail.clone())
                    .await
                    .unwrap(),
                "the second use is refused"
            );
            assert!(
                t.use_picker_token("jti-2", until, &actor(), "launch:y".into(), detail)
                    .await
                    .unwrap()
            );
            let sent = t
                .audit_entries()
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "deep_linking.response_sent")
                .count();
            assert_eq!(sent, 2);
            // Expired rows are swept by the next use.
            store
                .execute_unchecked(
                    "UPDATE deep_linking_picks SET expires_at = 0 WHERE jti = 'jti-1'",
                )
                .await
                .unwrap();
            t.use_picker_token(
                "jti-3",
                until,
                &actor(),
                "launch:z".into(),
                serde_json::json!({}),
            )
            .await
            .unwrap();
            let left = store
                .execute_unchecked("DELETE FROM deep_linking_picks WHERE jti = 'jti-1'")
                .await
                .unwrap();
            assert_eq!(left, 0);
        })
        .await;
    }
}
