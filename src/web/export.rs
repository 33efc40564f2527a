//! `GET /api/cameras/{id}/export?start=&end=[&download=1]`: a recorded range as one
//! fragmented MP4, assembled from the segment files by [`crate::recorder::export`] on a
//! blocking thread and streamed chunk by chunk (a few fragments buffered at most).

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiResult, AppState, Session, err, parse_time, session};
use crate::clock::rfc3339;
use crate::error::ErrorKind;
use crate::recorder::export::{Export, LOOK_BEHIND_MS, SegmentFile, check_range};
use crate::store::SegmentQuery;

/// Fragments waiting for a slow client; the reader blocks beyond this.
const CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    start: Option<String>,
    end: Option<String>,
    download: Option<String>,
}

/// `download`: "1"/"true" or "0"/"false".
fn flag(key: &str, v: Option<&str>) -> ApiResult<bool> {
    match v {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(other) => Err(err(ErrorKind::Invalid, &format!("{key}: expected 1 or 0, got {other:?}"))),
    }
}

/// A file name from a camera name: letters, digits, `-` and `_` kept, the rest `_`.
fn file_stem(name: &str) -> String {
    let s: String =
        name.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.trim_matches('_').is_empty() { "camera".to_string() } else { s }
}

pub(super) async fn export(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let s = session(ext)?;
    super::camera_access(&s, id, crate::store::Role::Member)?;
    let Query(q) = q.map_err(|e| err(ErrorKind::Invalid, &e.body_text()))?;
    let start = parse_time("start", &q.start)?.ok_or_else(|| err(ErrorKind::Invalid, "start: required (an RFC 3339 time)"))?;
    let end = parse_time("end", &q.end)?.ok_or_else(|| err(ErrorKind::Invalid, "end: required (an RFC 3339 time)"))?;
    let download = flag("download", q.download.as_deref())?;
    check_range(start, end)?;

    let query = SegmentQuery {
        camera_id: Some(id),
        since_ms: Some(start - LOOK_BEHIND_MS),
        until_ms: Some(end),
        limit: Some(100_000),
        only: None,
    };
    let rows = st.store.call(move |db| db.segments(&query)).await?;
    let nothing = || err(ErrorKind::NotFound, &format!("nothing recorded between {} and {}", rfc3339(start), rfc3339(end)));
    if rows.is_empty() {
        return Err(nothing());
    }
    let dir = st.store.data_dir().to_path_buf();
    let files: Vec<SegmentFile> =
        rows.into_iter().map(|r| SegmentFile { path: dir.join(&r.segment.path), start_ms: r.segment.start_ms }).collect();
    let export = crate::error::blocking("preparing an export", move || Export::open(files, start, end)).await??;
    let export = export.ok_or_else(nothing)?;

    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut export = export;
        let (mut bytes, t0) = (0u64, std::time::Instant::now());
        for chunk in export.by_ref() {
            let chunk = chunk.map_err(|e| {
                tracing::warn!(camera = id, error = %e, "export failed part way");
                std::io::Error::other(e.to_string())
            });
            bytes += chunk.as_ref().map_or(0, |c| c.len() as u64);
            if tx.blocking_send(chunk).is_err() {
                tracing::debug!(camera = id, "export: the client went away");
                return;
            }
        }
        tracing::debug!(camera = id, bytes, samples = export.samples, ms = t0.elapsed().as_millis() as u64, "export sent");
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });

    let mut resp = ([(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"))], Body::from_stream(stream)).into_response();
    if download {
        let name = st.cameras.cameras().into_iter().find(|c| c.id == id).map_or(format!("camera-{id}"), |c| file_stem(&c.name));
        let when = rfc3339(start).replace(':', "-");
        let v = format!("attachment; filename=\"{name}-{when}.mp4\"");
        resp.headers_mut()
            .insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&v).map_err(|e| err(ErrorKind::Invalid, &e.to_string()))?);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_stem("Front door"), "Front_door");
        assert_eq!(file_stem("\"; rm -rf"), "___rm_-rf");
        assert_eq!(file_stem("Café"), "Caf_");
        assert_eq!(file_stem("***"), "camera");
    }

    #[test]
    fn download_flag() {
        assert!(flag("download", Some("1")).is_ok_and(|d| d));
        assert!(flag("download", None).is_ok_and(|d| !d));
        assert!(flag("download", Some("yes")).is_err());
    }
}
