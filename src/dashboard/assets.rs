//! The dashboard's static files, embedded in the binary and served under names that carry a hash
//! of their content, so browsers may cache them for good and still see every new version.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    /// `app.3f2a9c1e.css`
    name: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

fn asset(stem: &str, extension: &str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    let digest = Sha256::digest(bytes);
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    Asset { name: format!("{stem}.{hash}.{extension}"), content_type, bytes }
}

static ASSETS: LazyLock<[Asset; 3]> = LazyLock::new(|| {
    [
        asset("app", "css", "text/css; charset=utf-8", include_bytes!("assets/app.css")),
        asset("app", "js", "text/javascript; charset=utf-8", include_bytes!("assets/app.js")),
        // htmx 2.0.11, the npm package's dist file (licence: assets/htmx.LICENSE, 0BSD).
        asset("htmx", "js", "text/javascript; charset=utf-8", include_bytes!("assets/htmx.min.js")),
    ]
});

/// The URLs pages link to.
pub struct AssetUrls {
    pub css: String,
    pub app_js: String,
    pub htmx_js: String,
}

pub static URLS: LazyLock<AssetUrls> = LazyLock::new(|| AssetUrls {
    css: format!("/assets/{}", ASSETS[0].name),
    app_js: format!("/assets/{}", ASSETS[1].name),
    htmx_js: format!("/assets/{}", ASSETS[2].name),
});

/// `GET /assets/{name}`: immutable for a year; an old hash is gone (404), never stale.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => {
            ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], asset.bytes)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "no such asset").into_response(),
    }
}

/// Bytes of every script and style sheet (the budget of contract §11 is 150 KB).
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.bytes.len()).sum()
}
