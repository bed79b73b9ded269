//! Attachment discovery and link upgrade: the tenant's catalog to pick from, and the
//! `addOnAttachment` made from the pick, recorded as a grade target.

use super::*;

pub(super) const PICK_CONTEXT: &str = "lmsbridge-google-addon-pick";

/// How long a discovery page's pick stays usable.
pub(super) const PICK_TTL_MICROS: i64 = 30 * 60 * 1_000_000;

/// What the discovery page's form carries back, sealed so it cannot be edited or replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pick {
    pub(super) platform_id: PlatformId,
    pub(super) sub: String,
    pub(super) course_id: String,
    pub(super) item_id: String,
    pub(super) item_type: String,
    pub(super) add_on_token: Option<String>,
    pub(super) jti: String,
    pub(super) expires_at: i64,
}

/// Attachment discovery: the tenant's catalog to pick from.
pub(super) async fn discovery_page(
    app: &App,
    p: &Platform,
    s: &Session,
    q: &AddOnQuery,
) -> Result<Response, AddOnFailure> {
    let items = app.store().tenant(&p.scope).catalog_items(false).await?;
    let pick = Pick {
        platform_id: p.id,
        sub: s.sub.clone(),
        course_id: q.course_id.clone().unwrap_or_default(),
        item_id: q.item_id.clone().unwrap_or_default(),
        item_type: q.item_type.clone().unwrap_or_else(|| "courseWork".into()),
        add_on_token: q.add_on_token.clone(),
        jti: random_token(16),
        expires_at: now_micros() + PICK_TTL_MICROS,
    };
    let token = seal(&app.inner().master, PICK_CONTEXT, &pick).map_err(AddOnFailure::Internal)?;
    let action = app
        .settings()
        .public(&format!("google/addons/{}/attach", p.id));
    let mut body = String::from("<h1>Add content from the catalog</h1>");
    if items.is_empty() {
        body.push_str(
            "<p>The catalog is empty: the product has not published any content yet.</p>",
        );
        return Ok(framed_page(StatusCode::OK, "Add content", &body));
    }
    body.push_str(&format!(
        "<form id=\"addon-pick\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"pick\" value=\"{}\">",
        escape(action.as_str()),
        escape(&token)
    ));
    for (i, item) in items.iter().enumerate() {
        let graded = match item.score_maximum {
            Some(m) if m > 0.0 => format!(" (graded out of {})", points(m)),
            _ => String::new(),
        };
        body.push_str(&format!(
            "<label><input type=\"radio\" name=\"item\" value=\"{}\"{}> {}{}</label>",
            escape(&item.id.to_string()),
            if i == 0 { " checked" } else { "" },
            escape(&item.title),
            escape(&graded)
        ));
    }
    body.push_str("<p><button type=\"submit\">Attach</button></p></form>");
    Ok(framed_page(StatusCode::OK, "Add content", &body))
}

/// Classroom's `maxPoints` is a whole number; a catalog maximum is rounded up to one.
pub(super) fn points(m: f64) -> u32 {
    if m.is_finite() && m > 0.0 {
        // Bounded by the check and the clamp, so the cast cannot truncate surprisingly.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let p = m.ceil().min(f64::from(u32::MAX)) as u32;
        p.max(1)
    } else {
        0
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AttachForm {
    pub(super) pick: Option<String>,
    pub(super) item: Option<String>,
}

/// `POST /google/addons/{platform}/attach`: the teacher picked an item.
pub(super) async fn attach(
    State(app): State<App>,
    Path(platform_raw): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AttachForm>,
) -> Result<Response, AddOnFailure> {
    let p = platform(&app, &platform_raw).await?;
    let stale = AddOnFailure::BadRequest(
        "pick_invalid",
        "This page has expired; please open the add-on again from Classroom.",
    );
    let pick: Pick = form
        .pick
        .as_deref()
        .and_then(|t| open_sealed(&app.inner().master, PICK_CONTEXT, t))
        .filter(|k: &Pick| k.platform_id == p.id && k.expires_at > now_micros())
        .ok_or(stale)?;
    let s = session(&app, &headers, p.id)
        .filter(|s| s.sub == pick.sub)
        .ok_or(AddOnFailure::Forbidden(
            "session_mismatch",
            "This choice was made in another Google account's session; please open the add-on again.",
        ))?;
    let item_id =
        form.item
            .as_deref()
            .and_then(|i| i.parse().ok())
            .ok_or(AddOnFailure::BadRequest(
                "item_missing",
                "Please choose an item from the catalog.",
            ))?;
    let tenant = app.store().tenant(&p.scope);
    let item = match tenant.catalog_item(item_id).await {
        Ok(i) if !i.archived => i,
        Ok(_) | Err(StoreError::NotFound) => {
            return Err(AddOnFailure::NotFound(
                "item_unknown",
                "That catalog item is no longer available.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let fresh = tenant
        .use_picker_token_as(
            "google.addon_item_picked",
            &format!("gaddon:{}", pick.jti),
            pick.expires_at,
            &teacher_actor(&s),
            format!("catalog_item:{}", item.id),
            serde_json::json!({"course_id": pick.course_id, "item_id": pick.item_id}),
        )
        .await?;
    if !fresh {
        return Err(AddOnFailure::BadRequest(
            "pick_used",
            "This choice was already submitted; the attachment exists in Classroom.",
        ));
    }
    let q = AddOnQuery {
        course_id: Some(pick.course_id.clone()),
        item_id: Some(pick.item_id.clone()),
        item_type: Some(pick.item_type.clone()),
        add_on_token: pick.add_on_token.clone(),
        ..AddOnQuery::default()
    };
    let client = api_client(&app, &p).await?;
    // The form is not an iframe open, but the role is confirmed again all the same: the
    // pick may have waited while the teacher was removed from the course.
    let context = confirm(&client, &s, &q).await.map_err(|e| {
        AddOnFailure::Classroom(
            "Classroom did not confirm that you may add to this post.",
            e,
        )
    })?;
    if context.role() != Some(ClassroomRole::Teacher) {
        return Err(AddOnFailure::Forbidden(
            "teacher_only",
            "Only the course's teachers can add content, and Classroom says you are not one here.",
        ));
    }
    create_attachment(&app, &p, &client, &s, &q, &item).await
}

pub(super) fn teacher_actor(s: &Session) -> Actor {
    Actor {
        kind: domain::ActorKind::Instructor,
        id: format!("google:{}", s.sub),
    }
}

/// Creates the attachment in Classroom (graded when the item has a maximum), records it as
/// a grade target, registers the course for roster changes, and closes the iframe.
pub(super) async fn create_attachment(
    app: &App,
    p: &Platform,
    client: &ClassroomClient,
    s: &Session,
    q: &AddOnQuery,
    item: &CatalogItem,
) -> Result<Response, AddOnFailure> {
    let max_points = item.score_maximum.map(points).filter(|m| *m > 0);
    let new = NewAddOnAttachment {
        title: item.title.clone(),
        teacher_view_uri: view_url(app, p.id, View::Teacher),
        student_view_uri: view_url(app, p.id, View::Student),
        student_work_review_uri: Some(view_url(app, p.id, View::Review)),
        max_points,
    };
    let created = client
        .create_add_on_attachment(
            &s.credentials(),
            &q.course(),
            &q.item(),
            q.token().as_ref(),
            &new,
        )
        .await
        .map_err(|e| AddOnFailure::Classroom("Classroom did not accept the attachment.", e))?;
    let tenant = app.store().tenant(&p.scope);
    let record = tenant
        .record_add_on_attachment(&StoredAttachment {
            platform_id: p.id,
            course_id: created.course_id.as_str().to_owned(),
            course_title: None,
            item_id: created.item_id.as_str().to_owned(),
            item_type: q.item_type.clone().unwrap_or_else(|| "courseWork".into()),
            attachment_id: created.id.as_str().to_owned(),
            catalog_item_id: Some(item.id.to_string()),
            title: item.title.clone(),
            max_points,
            teacher_user_id: s.sub.clone(),
        })
        .await?;
    tracing::info!(platform = %p.id, attachment = %record.attachment_id, graded = max_points.is_some(), "google add-on attachment created");
    let grant = tenant.google_grant_for_user(p.id, &s.sub).await?;
    let passback_ready = grant
        .as_ref()
        .is_some_and(|g| g.status == store::google::GrantStatus::Active && g.has_refresh_token);
    if app.settings().google_pubsub_topic.is_some() && passback_ready {
        let (app, scope, platform, course, sub) = (
            app.clone(),
            p.scope.clone(),
            p.id,
            record.course_id.clone(),
            s.sub.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = crate::google_push_renewal::ensure_course_registered(
                &app, &scope, platform, &course, &sub,
            )
            .await
            {
                tracing::warn!(course = %course, error = %e, "registering roster push for a course failed; the renewal task retries");
            }
        });
    }
    let mut body = format!(
        "<h1>Added</h1><p>“{}” is attached to this assignment",
        escape(&item.title)
    );
    match max_points {
        Some(m) => body.push_str(&format!(", graded out of {m}.</p>")),
        None => body.push_str(".</p>"),
    }
    if max_points.is_some() && !passback_ready {
        body.push_str("<p><strong>Grades cannot reach Classroom yet:</strong> lmsbridge holds no offline access for your account. Open the add-on again and sign in to allow it.</p>");
    }
    // Classroom closes the discovery iframe on this message.
    body.push_str(&format!(
        "<script>window.parent.postMessage({{type:'Classroom',action:'closeIframe'}},'{CLASSROOM_ORIGIN}');</script>"
    ));
    Ok(framed_page(StatusCode::OK, "Added", &body))
}

/// Link upgrade: a teacher pasted a link Classroom recognised as ours; it becomes an
/// attachment when it is a catalog item's URL.
pub(super) async fn upgrade(
    app: &App,
    p: &Platform,
    client: &ClassroomClient,
    s: &Session,
    q: &AddOnQuery,
) -> Result<Response, AddOnFailure> {
    let wanted = q.url_to_upgrade.as_deref().unwrap_or_default();
    let items = app.store().tenant(&p.scope).catalog_items(false).await?;
    let Some(item) = items.iter().find(|i| i.url.as_str() == wanted) else {
        return Err(AddOnFailure::NotFound(
            "link_unknown",
            "This link is not one of the catalog's items, so it cannot become an attachment.",
        ));
    };
    create_attachment(app, p, client, s, q, item).await
}
