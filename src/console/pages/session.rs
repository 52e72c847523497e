//! Signing in and out, and the long poll behind live pages.

use super::*;

/// The pre-session cookie the sign-in form's CSRF token is bound to.
const LOGIN_COOKIE: &str = "roster_login";

fn tls(ctx: &Ctx) -> bool {
    ctx.auth.is_enabled()
}

fn cookie_attrs(ctx: &Ctx) -> &'static str {
    if tls(ctx) {
        "Path=/ui; HttpOnly; Secure; SameSite=Strict"
    } else {
        "Path=/ui; HttpOnly; SameSite=Strict"
    }
}

fn login_markup(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in · Roster" }
                link rel="stylesheet" href="/ui/assets/console.css";
            }
            body.login {
                main {
                    h1 { "Roster" }
                    p { "Sign in with an API token (the same tokens and roles as the API)." }
                    @if let Some(e) = error { p.error id="error" { (e) } }
                    form method="post" action="/ui/login" {
                        input type="hidden" name="_csrf" value=(csrf);
                        label for="token" { "Token" }
                        input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                        button.primary id="sign-in" type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

pub async fn login_page(State(ctx): Cx) -> Response {
    if !ctx.auth.is_enabled() {
        return Redirect::to("/ui/servers").into_response();
    }
    let nonce = format!("{:032x}", rand::random::<u128>());
    let csrf = ctx.auth.session_key().csrf(&format!("login|{nonce}"));
    let mut resp = html_response(StatusCode::OK, login_markup(&csrf, None));
    let set = format!("{LOGIN_COOKIE}={nonce}; Max-Age=3600; {}", cookie_attrs(&ctx));
    resp.headers_mut().insert(header::SET_COOKIE, set.parse().expect("cookie header"));
    resp
}

pub async fn login(State(ctx): Cx, headers: HeaderMap, body: Bytes) -> Response {
    if !ctx.auth.is_enabled() {
        return Redirect::to("/ui/servers").into_response();
    }
    let fields = serde_urlencoded_pairs(&body);
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default().to_string();
    let key = ctx.auth.session_key();
    let payload = format!("login|{nonce}");
    if nonce.is_empty() || !key.csrf_ok(&payload, fields.get("_csrf").map(String::as_str).unwrap_or("")) {
        return refusal(StatusCode::FORBIDDEN, "the sign-in form's CSRF token is missing or stale; reload the sign-in page");
    }
    let token = fields.get("token").map(|t| t.trim()).unwrap_or("");
    match ctx.auth.user_for_secret(token) {
        Some((identity, hash)) if identity.role != Role::Agent => {
            let cookie = key.issue(&identity.name, &hash, commands::now_ms());
            let mut resp = Redirect::to("/ui/servers").into_response();
            let set = format!("{SESSION_COOKIE}={cookie}; Max-Age={}; {}", SESSION_TTL_MS / 1000, cookie_attrs(&ctx));
            resp.headers_mut().insert(header::SET_COOKIE, set.parse().expect("cookie header"));
            resp
        }
        Some(_) => html_response(StatusCode::FORBIDDEN, login_markup(&key.csrf(&payload), Some("agent tokens cannot sign in to the console"))),
        None => html_response(StatusCode::UNAUTHORIZED, login_markup(&key.csrf(&payload), Some("that token is not valid (unknown or revoked)"))),
    }
}

pub async fn logout(State(ctx): Cx, viewer: Viewer, body: Bytes) -> Response {
    if let Err(r) = checked_form(&viewer, &ctx, &body) {
        return r;
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    let set = format!("{SESSION_COOKIE}=; Max-Age=0; {}", cookie_attrs(&ctx));
    resp.headers_mut().insert(header::SET_COOKIE, set.parse().expect("cookie header"));
    resp
}

#[derive(Deserialize)]
pub struct WaitQuery {
    after: u64,
    /// With it, an event recorded past this sequence number answers too (the events page).
    events_after: Option<u64>,
    /// With it, an agent acknowledging a deployment on this node answers too (the agents page).
    acks_after: Option<u64>,
}

/// Long poll behind live pages: answers once the revision is past `after` (or an event is
/// past `events_after`), or after [`LIVE_WAIT_MS`] with nothing new, so an open page costs
/// no request while idle.
pub async fn wait(State(ctx): Cx, _viewer: Viewer, Query(q): Query<WaitQuery>) -> Response {
    let mut revisions = ctx.machine.subscribe();
    let mut events = ctx.machine.subscribe_events();
    let mut acks = ctx.agents.subscribe_acks();
    let deadline = tokio::time::sleep(Duration::from_millis(LIVE_WAIT_MS));
    tokio::pin!(deadline);
    loop {
        let revision = *revisions.borrow_and_update();
        let seq = *events.borrow_and_update();
        let acked = *acks.borrow_and_update();
        let answer = Json(serde_json::json!({"revision": revision, "events": seq, "acks": acked}));
        if revision > q.after || q.events_after.is_some_and(|e| seq > e) || q.acks_after.is_some_and(|a| acked > a) {
            return answer.into_response();
        }
        tokio::select! {
            _ = &mut deadline => return answer.into_response(),
            changed = revisions.changed() => if changed.is_err() { return StatusCode::SERVICE_UNAVAILABLE.into_response() },
            changed = events.changed() => if changed.is_err() { return StatusCode::SERVICE_UNAVAILABLE.into_response() },
            changed = acks.changed() => if changed.is_err() { return StatusCode::SERVICE_UNAVAILABLE.into_response() },
        }
    }
}
