//! The built-in dashboard at `/dashboard` and its JSON and event-stream API under `/admin`:
//! overview, apps, channels, connection inspector, the debug console and its event
//! creator. Everything here goes through [`auth::Auth`]; assets are compiled in.

mod api;
pub mod auth;
mod history;
mod stream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use auth::{Auth, Refusal};
pub use history::History;

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// What the admin routes share.
pub struct Console {
    pub node: Arc<Node>,
    pub auth: Auth,
    pub history: History,
    pub usage: Arc<crate::usage::UsageStore>,
}

/// The dashboard's routes, or `None` (with one log line) when it must stay off: no token
/// and a non-loopback address.
pub fn router(
    node: Arc<Node>,
    usage: Arc<crate::usage::UsageStore>,
    token: Option<&crate::apps::Secret>,
    loopback: bool,
    shutdown: CancellationToken,
) -> Option<Router> {
    if token.is_none() && !loopback {
        tracing::warn!(
            "dashboard off: set [admin] token (or HERALD_ADMIN_TOKEN) to serve it on a non-loopback address"
        );
        return None;
    }
    let console = Arc::new(Console {
        node,
        auth: Auth::new(token),
        history: History::default(),
        usage,
    });
    tokio::spawn(history::sample(console.clone(), shutdown));
    let router = Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/login", get(login_page).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/app.js", get(script))
        .route("/dashboard/style.css", get(style))
        .route("/admin/overview", get(api::overview))
        .route("/admin/apps", get(api::apps))
        .route("/admin/apps/{app_id}/channels", get(api::channels))
        .route("/admin/apps/{app_id}/channels/{channel}", get(api::channel))
        .route("/admin/apps/{app_id}/connections", get(api::connections))
        .route("/admin/apps/{app_id}/events", post(api::trigger))
        .route("/admin/apps/{app_id}/usage", get(api::usage))
        .route(
            "/admin/apps/{app_id}/users/{user_id}/terminate",
            post(api::terminate_user),
        )
        .route("/admin/connections/{socket_id}", get(api::connection))
        .route(
            "/admin/connections/{socket_id}/terminate",
            post(api::terminate_connection),
        )
        .route("/admin/stream", get(stream::stream))
        .with_state(console);
    Some(router)
}

/// An authorized admin request (the extractor every admin route takes).
pub struct Admin;

/// The client's address as the edge limits see it (`trusted_proxies` honoured), so failed
/// tokens behind a proxy are counted per client, not for everyone behind it at once.
fn client_ip(console: &Console, parts: &Parts) -> IpAddr {
    console
        .node
        .edge
        .client_ip(&parts.extensions, &parts.headers)
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

impl FromRequestParts<Arc<Console>> for Admin {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Refusal> {
        let failures = &console.node.metrics.admin_auth_failures;
        let ip = client_ip(console, parts);
        console.auth.check(parts, ip, failures)?;
        Ok(Self)
    }
}

fn html(body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, body).into_response()
}

async fn index(admin: Result<Admin, Refusal>) -> Response {
    match admin {
        Ok(Admin) => html(INDEX),
        Err(Refusal::Unauthorized) => Redirect::to("/dashboard/login").into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn login_page(State(console): State<Arc<Console>>) -> Response {
    if console.auth.is_open() {
        return Redirect::to("/dashboard").into_response();
    }
    html(LOGIN)
}

/// `POST /dashboard/login` with the form field `token`.
async fn login(
    State(console): State<Arc<Console>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return Refusal::CrossOrigin.into_response();
        }
    }
    let given = form_field(&body, "token").unwrap_or_default();
    let failures = &console.node.metrics.admin_auth_failures;
    let ip = console.node.edge.client_ip_of(remote, &headers);
    match console.auth.login(&given, ip, failures) {
        Ok(id) => {
            let cookie = auth::session_cookie(&id);
            let mut response = Redirect::to("/dashboard").into_response();
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(Refusal::Unauthorized) => (StatusCode::UNAUTHORIZED, html(LOGIN)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn logout(State(console): State<Arc<Console>>, _: Admin, headers: HeaderMap) -> Response {
    console.auth.logout(&headers);
    let mut response = Redirect::to("/dashboard/login").into_response();
    let expired = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::COOKIE
    );
    if let Ok(value) = expired.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn script(_: Admin) -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style(_: Admin) -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}
