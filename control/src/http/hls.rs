//! HLS playback: `/hls/<job id>/<file>` serves a live stream's playlists and segments from
//! `<recordings>/<job id>/hls/` (control's HTTPS server is the origin; a CDN can sit in
//! front of it).
//!
//! No token: like 100ms's playback URLs, the URL is the permission, and the job id in it is
//! 96 random bits. Only `.m3u8` and `.ts` files are served, from the job's directory and its
//! rendition folders (`0/`, `1/`, `2/`), never through `..` or a hidden file. Playlists change
//! every segment, so they are not cached; segments never change, so they may be. Any origin
//! may read them (`Access-Control-Allow-Origin: *`): web players on other sites fetch them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Whether a path below a job's HLS directory may be served, and its content type.
pub fn servable(rel: &str) -> Option<&'static str> {
    let parts: Vec<&str> = rel.split('/').collect();
    let ok_part = |p: &str| {
        !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
        return None;
    }
    if parts.len() == 2 && !parts[0].chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match rel.rsplit('.').next() {
        Some("m3u8") => Some("application/vnd.apple.mpegurl"),
        Some("ts") => Some("video/mp2t"),
        _ => None,
    }
}

/// `GET /hls/{job_id}/{*path}`.
pub async fn serve(State(st): State<AppState>, Path((job_id, rel)): Path<(String, String)>) -> Response {
    let not_found =
        || (StatusCode::NOT_FOUND, [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], "not found").into_response();
    if job_id.len() > 64 || !job_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return not_found();
    }
    let Some(mime) = servable(&rel) else { return not_found() };
    let path = crate::composite::hls_dir(&st.recorder, &job_id).join(&rel);
    let Ok(data) = tokio::fs::read(&path).await else { return not_found() };
    let cache = if mime == "video/mp2t" { "public, max-age=3600" } else { "no-cache" };
    (
        [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, cache), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Body::from(data),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::servable;

    #[test]
    fn only_playlists_and_segments_of_the_job_are_served() {
        assert_eq!(servable("master.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(servable("0/index.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(servable("1/seg00012.ts"), Some("video/mp2t"));
        for bad in [
            "../x.m3u8",
            "0/../../x.ts",
            ".hidden.m3u8",
            "0/.hlssink2.m3u8",
            "a/b/c.ts",
            "x/seg.ts",
            "0/x.mp4",
            "",
            "/etc/passwd",
            "0//a.ts",
        ] {
            assert_eq!(servable(bad), None, "{bad}");
        }
    }
}
