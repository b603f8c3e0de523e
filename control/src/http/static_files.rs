//! The web apps control serves: the demo (files of `--demo-dir`) at `/`, and 100ms Prebuilt
//! (files of `--prebuilt-dir`) at `/meeting/`.
//!
//! `/` and any path ending in `/` serve that directory's `index.html`; a path with no file
//! extension that matches no file serves the top `index.html` too (the app's client-side
//! routes). Paths are percent-decoded, and any `..`, backslash or NUL is refused, so nothing
//! outside the directory is served. If the directory does not exist, `/` answers a page that
//! says how to build the demo.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;

const NOT_BUILT: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Demo not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The demo app is not built</h1>
<p>control serves the demo app from <code>--demo-dir</code> (default <code>client/dist</code>), and
that directory does not exist. Build it:</p>
<pre>cd client
npm ci &amp;&amp; npm run build</pre>
<p>then reload this page (or pass <code>--demo-dir</code> pointing at a built copy). The API is
up meanwhile: <a href="/api/config">/api/config</a>.</p>
</body></html>
"#;

const PREBUILT_NOT_BUILT: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Prebuilt not built</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>The meeting app is not built</h1>
<p>control serves 100ms Prebuilt at <code>/meeting/&lt;room code&gt;</code> from
<code>--prebuilt-dir</code> (default <code>prebuilt/dist</code>), and that directory does not
exist. Build it:</p>
<pre>cd prebuilt
npm ci &amp;&amp; npm run build</pre>
<p>then reload this page.</p>
</body></html>
"#;

/// The demo app, at `/`.
pub async fn serve(State(st): State<AppState>, method: Method, uri: Uri) -> Response {
    serve_from(&st.demo_dir, uri.path(), &method, NOT_BUILT).await
}

/// 100ms Prebuilt, at `/meeting/...`: `/meeting/<room code>` is its page, its files are
/// `/meeting/main.js` and `/meeting/main.css`.
pub async fn meeting(State(st): State<AppState>, method: Method, uri: Uri) -> Response {
    let rel = uri.path().strip_prefix("/meeting").unwrap_or("/");
    serve_from(&st.prebuilt_dir, if rel.is_empty() { "/" } else { rel }, &method, PREBUILT_NOT_BUILT).await
}

/// A file of `dir` for the request path `uri_path` (relative to where the app is mounted).
async fn serve_from(dir: &Path, uri_path: &str, method: &Method, not_built: &'static str) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(rel) = sanitize(uri_path) else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    if !dir.is_dir() {
        return if rel.extension().is_none() || uri_path == "/index.html" {
            Html(not_built).into_response()
        } else {
            not_found()
        };
    }
    let mut path = dir.join(&rel);
    if rel.as_os_str().is_empty() || uri_path.ends_with('/') {
        path = path.join("index.html");
    }
    let body = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(_) if path.is_dir() => match tokio::fs::read(path.join("index.html")).await {
            Ok(b) => {
                path = path.join("index.html");
                b
            }
            Err(_) => return not_found(),
        },
        // A client-side route of the app (no extension): the app's shell.
        Err(_) if rel.extension().is_none() => match tokio::fs::read(dir.join("index.html")).await {
            Ok(b) => {
                path = dir.join("index.html");
                b
            }
            Err(_) => return not_found(),
        },
        Err(_) => return not_found(),
    };
    let mut resp = if *method == Method::HEAD {
        let len = body.len();
        let mut r = Response::new(Body::empty());
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    } else {
        Response::new(Body::from(body))
    };
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
    // index.html names hashed asset files: always revalidate it, so a rebuild shows at once.
    let cache = if path.file_name().is_some_and(|n| n == "index.html") { "no-cache" } else { "public, max-age=300" };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// The request path as a relative path inside the demo directory, or `None` if it could
/// leave it (or is not valid UTF-8 after percent-decoding).
pub fn sanitize(uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(uri_path)?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut out = PathBuf::new();
    for c in Path::new(decoded.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_escape_the_demo_dir_are_refused() {
        for bad in ["/../etc/passwd", "/a/../../x", "/%2e%2e/secret", "/a%5c..%5cb", "/x%00", "/%zz", "/%e9"] {
            assert_eq!(sanitize(bad), None, "{bad}");
        }
    }

    #[test]
    fn ordinary_paths_map_inside_the_demo_dir() {
        assert_eq!(sanitize("/").unwrap(), PathBuf::new());
        assert_eq!(sanitize("/assets/index-abc.js").unwrap(), PathBuf::from("assets/index-abc.js"));
        assert_eq!(sanitize("/./a//b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(sanitize("/with%20space.png").unwrap(), PathBuf::from("with space.png"));
        assert_eq!(content_type(Path::new("a/b.mjs")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
