//! The dashboard: plain HTML, CSS and a JavaScript module, embedded in the
//! binary (no build step), served under `/ui/`.

use axum::extract::OriginalUri;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ApiError;
use crate::extract::Path;

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// `GET /ui`: to `/ui/`, so the page's relative URLs resolve.
pub(crate) async fn redirect(OriginalUri(uri): OriginalUri) -> Redirect {
    Redirect::permanent(&format!("{}/", uri.path()))
}

/// `GET /ui/`: the page.
pub(crate) async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/{asset}`: its script and style sheet.
pub(crate) async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    match name.as_str() {
        "app.js" => Ok(file("text/javascript; charset=utf-8", APP_JS)),
        "app.css" => Ok(file("text/css; charset=utf-8", APP_CSS)),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("the dashboard has no file `{name}`"),
        )),
    }
}

fn file(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:",
            ),
        ],
        body,
    )
        .into_response()
}
