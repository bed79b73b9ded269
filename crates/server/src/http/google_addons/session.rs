//! Google sign-in for the add-on iframes (authorization code with PKCE and `login_hint`, a
//! single-use state bound to this browser by a cookie) and the session it leaves: a cookie
//! sealed with the master key holding who signed in and their short-lived token.

use super::*;

pub(super) const SESSION_COOKIE_PREFIX: &str = "lmsb_gaddon_";

pub(super) const STATE_COOKIE_PREFIX: &str = "lmsb_gastate_";

pub(super) const RETURN_CONTEXT: &str = "lmsbridge-google-addon-return";

pub(super) const SESSION_CONTEXT: &str = "lmsbridge-google-addon-session";

/// Sealed values longer than this are not ours.
pub(super) const MAX_SEALED_LEN: usize = 8192;

pub(super) fn seal<T: Serialize>(
    master: &MasterKey,
    context: &str,
    value: &T,
) -> anyhow::Result<String> {
    let json = serde_json::to_vec(value)?;
    Ok(URL_SAFE_NO_PAD.encode(master.seal(&json, context)?))
}

pub(super) fn open_sealed<T: DeserializeOwned>(
    master: &MasterKey,
    context: &str,
    value: &str,
) -> Option<T> {
    if value.len() > MAX_SEALED_LEN {
        return None;
    }
    let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
    let json = master.open(&sealed, context).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Where a sign-in returns to: the view and the query Classroom opened it with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SignInReturn {
    pub(super) platform_id: PlatformId,
    pub(super) view: View,
    pub(super) query: Vec<(String, String)>,
    pub(super) login_hint: Option<String>,
    /// Ask Google for consent again (it issues a refresh token only then).
    pub(super) consent: bool,
    pub(super) expires_at: i64,
}

/// A signed-in user, sealed into a cookie: who they are and their short-lived token.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Session {
    pub(super) platform_id: PlatformId,
    pub(super) sub: String,
    pub(super) email: Option<String>,
    pub(super) name: Option<String>,
    pub(super) given_name: Option<String>,
    pub(super) family_name: Option<String>,
    pub(super) access_token: String,
    pub(super) expires_at: i64,
    /// A teacher view's offline grant, kept here until Classroom confirms the user is a
    /// teacher: a student who signs in on a teacher view leaves no grant behind.
    #[serde(default)]
    pub(super) pending_grant: Option<PendingGrant>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct PendingGrant {
    pub(super) refresh_token: String,
    pub(super) scopes: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("platform_id", &self.platform_id)
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether this session is the account Classroom's `login_hint` names.
    pub(super) fn matches_hint(&self, hint: Option<&str>) -> bool {
        hint.is_none_or(|h| {
            h == self.sub
                || self
                    .email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(h))
        })
    }

    pub(super) fn person(&self) -> LaunchPerson {
        LaunchPerson {
            platform_user_id: self.sub.clone(),
            name: self.name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            email: self.email.clone(),
        }
    }

    pub(super) fn credentials(&self) -> Credentials {
        Credentials::Bearer(AccessToken::new(self.access_token.clone()))
    }
}

pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Cookie attributes: the iframe is third-party inside Classroom, so `SameSite=None;
/// Secure` where the public URL is https; plain-http development setups get `Lax`.
pub(super) fn cookie(app: &App, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = app.settings().public_url.scheme() == "https";
    let attrs = if secure {
        "SameSite=None; Secure"
    } else {
        "SameSite=Lax"
    };
    let path = app.settings().public("google/addons/");
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; {attrs}",
        path.path()
    ))
    .ok()
}

pub(super) fn session_cookie_name(platform: PlatformId) -> String {
    format!(
        "{SESSION_COOKIE_PREFIX}{}",
        &platform.as_uuid().simple().to_string()[..12]
    )
}

pub(super) fn session(app: &App, headers: &HeaderMap, platform: PlatformId) -> Option<Session> {
    let raw = cookie_value(headers, &session_cookie_name(platform))?;
    let s: Session = open_sealed(&app.inner().master, SESSION_CONTEXT, raw)?;
    // A minute of margin: a token about to lapse would fail mid-page.
    (s.platform_id == platform && s.expires_at > now_micros() + 60_000_000).then_some(s)
}

/// Our OAuth client for the add-on sign-in: the tenant's client id and secret with the
/// add-on callback as redirect URI (registered beside the connect callback).
pub(super) async fn sign_in_client(app: &App, p: &Platform) -> Result<OAuthClient, AddOnFailure> {
    let client = app
        .store()
        .tenant(&p.scope)
        .google_client(p.id, &app.inner().master)
        .await?
        .ok_or(AddOnFailure::NotFound(
            "google_not_configured",
            "Google Classroom is not set up for this add-on yet.",
        ))?;
    Ok(OAuthClient::new(
        app.inner().http.clone(),
        OAuthConfig {
            client_id: ClientId::new(client.platform.client_id.clone()),
            client_secret: ClientSecret::new(client.client_secret.secret()),
            redirect_uri: app.settings().public("google/addons/callback"),
            endpoints: app.inner().google.endpoints().clone(),
        },
    ))
}

pub(super) fn session_cookie(app: &App, s: &Session) -> Option<HeaderValue> {
    let max_age = (s.expires_at - now_micros()) / 1_000_000;
    let sealed = seal(&app.inner().master, SESSION_CONTEXT, s).ok()?;
    cookie(
        app,
        &session_cookie_name(s.platform_id),
        &sealed,
        max_age.max(0),
    )
}

pub(super) fn sign_in_page(
    app: &App,
    p: &Platform,
    view: View,
    q: &AddOnQuery,
    consent: bool,
) -> Result<Response, AddOnFailure> {
    let back = SignInReturn {
        platform_id: p.id,
        view,
        query: q.raw.clone(),
        login_hint: q.login_hint.clone(),
        consent,
        expires_at: now_micros() + app.settings().login_state_ttl_secs * 1_000_000,
    };
    let mut url = app
        .settings()
        .public(&format!("google/addons/{}/signin", p.id));
    url.query_pairs_mut().append_pair(
        "t",
        &seal(&app.inner().master, RETURN_CONTEXT, &back).map_err(AddOnFailure::Internal)?,
    );
    let href = escape(url.as_str());
    // Google's sign-in page cannot be framed: it opens in a popup, which reloads this
    // iframe when done; without JavaScript the link signs in in a new window.
    let body = format!(
        "<h1>Sign in to continue</h1><p>The add-on needs to know which Google account is using it.</p>\
         <p><a class=\"button\" id=\"signin\" href=\"{href}\" target=\"_blank\" rel=\"opener\">Sign in with Google</a></p>\
         <script>document.getElementById('signin').addEventListener('click',function(e){{e.preventDefault();\
         window.open(this.href,'lmsbridge_signin','width=520,height=640');}});</script>"
    );
    Ok(framed_page(StatusCode::OK, "Sign in", &body))
}

#[derive(Debug, Deserialize)]
pub(super) struct SignInQuery {
    pub(super) t: Option<String>,
}

/// `GET /google/addons/{platform}/signin?t=…`: starts the authorization request.
pub(super) async fn sign_in(
    State(app): State<App>,
    Path(platform_raw): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Result<Response, AddOnFailure> {
    let p = platform(&app, &platform_raw).await?;
    let back: SignInReturn = query
        .t
        .as_deref()
        .and_then(|t| open_sealed(&app.inner().master, RETURN_CONTEXT, t))
        .filter(|b: &SignInReturn| b.platform_id == p.id && b.expires_at > now_micros())
        .ok_or(AddOnFailure::BadRequest(
            "signin_link_invalid",
            "This sign-in link has expired; please open the add-on again from Classroom.",
        ))?;
    let oauth = sign_in_client(&app, &p).await?;
    let scopes = scopes_for(&app, back.view);
    let mut request = AuthorizationRequest::new(&scopes);
    if let Some(h) = back.login_hint.as_deref() {
        request = request.login_hint(h);
    }
    request = if !back.view.for_teachers() {
        request.online()
    } else if back.consent {
        request.require_refresh_token()
    } else {
        request
    };
    let pending = oauth.authorization_url(&request);
    let browser_secret = random_token(32);
    let expires_at = now_micros() + app.settings().login_state_ttl_secs * 1_000_000;
    app.store()
        .tenant(&p.scope)
        .put_google_oauth_state(
            &NewGoogleOAuthState {
                platform_id: p.id,
                state: SecretString::new(pending.state.secret()),
                browser_secret: SecretString::new(browser_secret.clone()),
                verifier: SecretString::new(pending.verifier.secret()),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                login_hint: back.login_hint.clone(),
                expires_at,
            },
            &app.inner().master,
        )
        .await?;
    // The cookie carries the browser binding and, sealed, where to return: Google only
    // echoes the random state.
    let state_hash = sha256_hex(pending.state.secret().as_bytes());
    let name = format!("{STATE_COOKIE_PREFIX}{}", &state_hash[..16]);
    let value = format!(
        "{browser_secret}.{}",
        query.t.as_deref().unwrap_or_default()
    );
    let mut resp = Redirect::to(pending.url.as_str()).into_response();
    if let Some(c) = cookie(&app, &name, &value, app.settings().login_state_ttl_secs) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// `GET /google/addons/callback`: Google's redirect after consent.
pub(super) async fn callback(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AddOnFailure> {
    let unknown = || {
        AddOnFailure::BadRequest(
            "state_unknown",
            "This sign-in has expired or was already used; please open the add-on again.",
        )
    };
    let redirect = app.settings().public(&format!(
        "google/addons/callback?{}",
        raw.as_deref().unwrap_or("")
    ));
    let state_param = redirect
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or_else(unknown)?;
    let state_hash = sha256_hex(state_param.as_bytes());
    let cookie_name = format!("{STATE_COOKIE_PREFIX}{}", &state_hash[..16]);
    // Single use: the state is taken before anything else, so a replayed redirect finds
    // nothing even when the rest fails.
    let (scope, stored) = app
        .store()
        .take_google_oauth_state(&state_param, &app.inner().master)
        .await?
        .ok_or_else(unknown)?;
    let (secret, t) = cookie_value(&headers, &cookie_name)
        .and_then(|v| v.split_once('.'))
        .ok_or(AddOnFailure::BadRequest(
            "state_cookie_missing",
            "Your browser did not keep this sign-in's cookie; please allow cookies for this site and try again.",
        ))?;
    if !constant_time_eq(
        sha256_hex(secret.as_bytes()).as_bytes(),
        stored.browser_hash.as_bytes(),
    ) {
        return Err(AddOnFailure::BadRequest(
            "state_not_bound",
            "This sign-in was started in another browser; please open the add-on again.",
        ));
    }
    let back: SignInReturn = open_sealed(&app.inner().master, RETURN_CONTEXT, t)
        .filter(|b: &SignInReturn| b.platform_id == stored.platform_id)
        .ok_or_else(unknown)?;
    let p = Platform {
        scope,
        id: stored.platform_id,
    };
    let callback =
        OAuthClient::parse_callback(&redirect, &classroom::CsrfState::new(state_param.clone()))
            .map_err(AddOnFailure::SignIn)?;
    let oauth = sign_in_client(&app, &p).await?;
    let grant = oauth
        .exchange_code(
            &callback.code,
            &classroom::PkceVerifier::new(stored.verifier.secret()),
        )
        .await
        .map_err(AddOnFailure::SignIn)?;
    let user = oauth
        .userinfo(&grant.access_token)
        .await
        .map_err(AddOnFailure::SignIn)?;
    let mut s = Session {
        platform_id: p.id,
        sub: user.sub.as_str().to_owned(),
        email: user.email.clone(),
        name: user.name.clone(),
        given_name: user.given_name.clone(),
        family_name: user.family_name.clone(),
        access_token: grant.access_token.secret().to_owned(),
        expires_at: now_micros()
            + i64::try_from(grant.expires_in.as_micros()).unwrap_or(i64::MAX / 2),
        pending_grant: None,
    };
    if !s.matches_hint(back.login_hint.as_deref()) {
        return Err(AddOnFailure::Forbidden(
            "account_mismatch",
            "You signed in with a different Google account than the one using Classroom.",
        ));
    }
    if back.view.for_teachers() {
        let tenant = app.store().tenant(&p.scope);
        let has_token = match &grant.refresh_token {
            Some(refresh) => {
                s.pending_grant = Some(PendingGrant {
                    refresh_token: refresh.secret().to_owned(),
                    scopes: grant.scopes.iter().map(str::to_owned).collect(),
                });
                true
            }
            // The stored token must also cover what this sign-in asked for: a token
            // consented for other features cannot call the add-on methods.
            None => {
                let wanted = scopes_for(&app, back.view);
                tenant
                    .google_grant_for_user(p.id, &s.sub)
                    .await?
                    .is_some_and(|g| {
                        g.status == store::google::GrantStatus::Active
                            && g.has_refresh_token
                            && wanted
                                .iter()
                                .filter(|w| !classroom::scopes::SIGN_IN.contains(w))
                                .all(|w| g.has_scope(w))
                    })
            }
        };
        // Google issues a refresh token only with consent; ask once more for it, since
        // passback after the teacher leaves depends on it.
        if !has_token && !back.consent {
            let again = SignInReturn {
                consent: true,
                expires_at: now_micros() + app.settings().login_state_ttl_secs * 1_000_000,
                ..back
            };
            let mut url = app
                .settings()
                .public(&format!("google/addons/{}/signin", p.id));
            url.query_pairs_mut().append_pair(
                "t",
                &seal(&app.inner().master, RETURN_CONTEXT, &again)
                    .map_err(AddOnFailure::Internal)?,
            );
            return Ok(with_session(
                &app,
                Redirect::to(url.as_str()).into_response(),
                &s,
                &cookie_name,
            ));
        }
    }
    Ok(with_session(
        &app,
        signed_in_page(&app, p.id, back.view, &back.query),
        &s,
        &cookie_name,
    ))
}

/// After sign-in: in the popup, reload the iframe that opened it and close; signed in
/// in the frame itself, go on to the view (the form carries Classroom's parameters).
pub(super) fn signed_in_page(
    app: &App,
    platform: PlatformId,
    view: View,
    query: &[(String, String)],
) -> Response {
    let mut body = format!(
        "<h1>Signed in</h1><form id=\"continue\" method=\"get\" action=\"{}\">",
        escape(view_url(app, platform, view).as_str())
    );
    for (k, v) in query {
        body.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        ));
    }
    body.push_str(
        "<noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script>if(window.opener&&window.name==='lmsbridge_signin'){try{window.opener.location.reload();}catch(e){}window.close();}\
         else{document.getElementById('continue').submit();}</script>",
    );
    framed_page(StatusCode::OK, "Signed in", &body)
}

pub(super) fn with_session(
    app: &App,
    mut resp: Response,
    s: &Session,
    state_cookie: &str,
) -> Response {
    if let Some(c) = session_cookie(app, s) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    if let Some(c) = cookie(app, state_cookie, "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}
