//! The operator console at `/console`: one page, its script and its stylesheet
//! (`console/index.html`, `app.js`, `app.css`), embedded at compile time, so the binary serves
//! it with no build step. The page is a client of the public GraphQL API only; it keeps the
//! credential in memory for the tab and sends `x-leadgate-csrf: 1` on every request.
//!
//! Every answer carries a strict `Content-Security-Policy` (no inline script or style, nothing
//! from another origin, no framing, no form posts) and `nosniff`. The page is `no-store` (in
//! demo mode it holds the demo token); the assets are revalidated by an `ETag` of their bytes.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// The policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Where the page's demo token goes (its `content` is empty outside demo mode).
const DEMO_META: &str = r#"<meta name="leadgate-demo-token" content="">"#;

/// An embedded asset and its entity tag.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..12]));
        Self {
            body,
            content_type,
            etag,
        }
    }
}

// computed once from constants: read-only, not mutable state
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_JS, "text/javascript; charset=utf-8"));
static STYLE: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_CSS, "text/css; charset=utf-8"));

fn secure(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// The page, with the demo token in its meta tag when there is one.
pub fn page(demo_token: Option<&str>) -> Response {
    let html = match demo_token {
        Some(token) => INDEX.replacen(
            DEMO_META,
            &format!(
                r#"<meta name="leadgate-demo-token" content="{}">"#,
                super::html_escape(token)
            ),
            1,
        ),
        None => INDEX.to_owned(),
    };
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(headers);
    response
}

fn asset(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, tag);
    }
    secure(headers);
    response
}

pub async fn script(request: HeaderMap) -> Response {
    asset(&SCRIPT, &request)
}

pub async fn style(request: HeaderMap) -> Response {
    asset(&STYLE, &request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_the_demo_meta_tag_and_loads_only_its_own_assets() {
        assert!(INDEX.contains(DEMO_META), "the demo token has nowhere to go");
        assert!(INDEX.contains(r#"src="/console/app.js""#));
        assert!(INDEX.contains(r#"href="/console/app.css""#));
        for inline in ["<script>", " style=", " onclick=", " onload=", "javascript:"] {
            assert!(
                !INDEX.contains(inline),
                "inline code or style breaks the CSP: {inline}"
            );
        }
    }

    #[test]
    fn the_demo_token_is_escaped_into_the_meta_tag() {
        let response = page(Some("a\"><script>x"));
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            HeaderValue::from_static(CSP)
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn an_asset_answers_304_to_its_own_etag() {
        let mut request = HeaderMap::new();
        let first = asset(&SCRIPT, &request);
        assert_eq!(first.status(), StatusCode::OK);
        request.insert(header::IF_NONE_MATCH, first.headers()[header::ETAG].clone());
        assert_eq!(asset(&SCRIPT, &request).status(), StatusCode::NOT_MODIFIED);
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(asset(&SCRIPT, &request).status(), StatusCode::OK);
    }
}
