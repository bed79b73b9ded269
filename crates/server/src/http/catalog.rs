//! The product API for the catalog: the content a teacher can place into a course through
//! lmsbridge's Deep Linking 2.0 picker (each item becomes one content item, DL §3).

use super::api::{ApiJson, TenantApiKey};
use super::error::ApiError;
use crate::App;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::Actor;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use store::{CatalogItemChanges, CatalogItemId, CatalogItemType, NewCatalogItem};
use url::Url;

/// Catalog changes made through the API are the product's.
fn actor() -> Actor {
    Actor::system("product-api")
}

/// `null` and absent mean different things in a PATCH: clear the field, leave it alone.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn parse_url(url: &str) -> Result<Url, ApiError> {
    Url::parse(url).map_err(|_| {
        ApiError::Invalid(
            "url must be an absolute http or https URL, such as https://product.example/item/1"
                .into(),
        )
    })
}

fn parse_id(id: &str) -> Result<CatalogItemId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound("not_found"))
}

/// A new item as the product sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The content item type; an LTI resource link when absent.
    #[serde(rename = "type", default = "resource_link")]
    item_type: CatalogItemType,
    title: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    custom: BTreeMap<String, String>,
    #[serde(default)]
    score_maximum: Option<f64>,
}

fn resource_link() -> CatalogItemType {
    CatalogItemType::LtiResourceLink
}

/// `POST /api/v1/catalog`: adds an item; 201 with the stored item.
pub async fn create(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let url = body.url.as_deref().map(parse_url).transpose()?;
    let item = app
        .store()
        .tenant(&scope)
        .create_catalog_item(
            &NewCatalogItem {
                item_type: body.item_type,
                title: body.title,
                text: body.text,
                url,
                custom: body.custom,
                score_maximum: body.score_maximum,
            },
            &actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(item)).into_response())
}

/// `GET /api/v1/catalog[?include_archived=true]`: the tenant's items, oldest first.
pub async fn list(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut include_archived = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("include_archived", "true") => include_archived = true,
            ("include_archived", "false") => include_archived = false,
            ("include_archived", _) => {
                return Err(ApiError::Invalid(
                    "include_archived must be true or false".into(),
                ));
            }
            _ => {}
        }
    }
    let items = app
        .store()
        .tenant(&scope)
        .catalog_items(include_archived)
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

/// `GET /api/v1/catalog/{id}`: one item, archived or not.
pub async fn get_item(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let item = app
        .store()
        .tenant(&scope)
        .catalog_item(parse_id(&id)?)
        .await?;
    Ok(Json(item).into_response())
}

/// A partial update: absent fields stay, `null` clears `text` and `score_maximum`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(rename = "type", default)]
    item_type: Option<CatalogItemType>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    text: Option<Option<String>>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    custom: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "present")]
    score_maximum: Option<Option<f64>>,
    #[serde(default)]
    archived: Option<bool>,
}

/// `PATCH /api/v1/catalog/{id}`: changes an item; the result must still be a valid item.
pub async fn update(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let url = body.url.as_deref().map(parse_url).transpose()?;
    let item = app
        .store()
        .tenant(&scope)
        .update_catalog_item(
            id,
            &CatalogItemChanges {
                item_type: body.item_type,
                title: body.title,
                text: body.text,
                url,
                custom: body.custom,
                score_maximum: body.score_maximum,
                archived: body.archived,
            },
            &actor(),
        )
        .await?;
    Ok(Json(item).into_response())
}

/// `DELETE /api/v1/catalog/{id}`: archives the item (204). It leaves the picker; links a
/// teacher already placed keep launching. `PATCH {"archived": false}` brings it back.
pub async fn archive(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store()
        .tenant(&scope)
        .archive_catalog_item(parse_id(&id)?, &actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
