//! `GET /api/cameras/{id}/snapshot.jpg[?width=N]`: a colour JPEG of the camera's latest
//! keyframe (its substream where it has one), decoded on demand through
//! [`CameraView::snapshot`]. Decoding costs a Pi real work, so pictures are cached per
//! camera and width for a short while and at most two are made at once; a request that
//! finds both decode slots busy gets the last picture made, or waits briefly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{ApiResult, AppState, Session, err, session};
use crate::camera::live::StreamKind;
use crate::error::{ErrorKind, blocking};
use crate::sync::lock;

/// A picture this young is served again instead of decoding anew.
const FRESH_FOR: Duration = Duration::from_secs(2);
/// Decodes at once, hub-wide.
const MAX_DECODES: usize = 2;
/// How long a request waits for a decode slot when there is no older picture to give.
const WAIT_FOR_SLOT: Duration = Duration::from_secs(5);
/// Pictures kept (cameras × widths asked for).
const MAX_ENTRIES: usize = 64;
pub const DEFAULT_WIDTH: u32 = 640;
pub const MIN_WIDTH: u32 = 160;
pub const MAX_WIDTH: u32 = 1920;

/// The pictures made lately and the decode slots.
pub struct Cache {
    entries: Mutex<HashMap<(i64, u32), (Instant, Bytes)>>,
    decodes: Semaphore,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { entries: Mutex::new(HashMap::new()), decodes: Semaphore::new(MAX_DECODES) }
    }
}

impl Cache {
    fn get(&self, key: (i64, u32), fresh_only: bool) -> Option<Bytes> {
        let entries = lock(&self.entries);
        let (at, jpeg) = entries.get(&key)?;
        (!fresh_only || at.elapsed() < FRESH_FOR).then(|| jpeg.clone())
    }

    fn put(&self, key: (i64, u32), jpeg: Bytes) {
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            let oldest = entries.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k);
            if let Some(k) = oldest {
                entries.remove(&k);
            }
        }
        entries.insert(key, (Instant::now(), jpeg));
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotQuery {
    width: Option<u32>,
    /// A cache-buster the page adds to refresh a poster; ignored.
    #[serde(rename = "t")]
    _refresh: Option<String>,
}

fn jpeg(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response()
}

pub async fn snapshot(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    q: Result<Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let s = session(ext)?;
    super::camera_access(&s, id, crate::store::Role::Viewer)?;
    let Query(q) = q.map_err(|e| err(ErrorKind::Invalid, &e.body_text()))?;
    let width = q.width.unwrap_or(DEFAULT_WIDTH).clamp(MIN_WIDTH, MAX_WIDTH);
    if !st.cameras.cameras().iter().any(|c| c.id == id) {
        return Err(err(ErrorKind::NotFound, "no such camera"));
    }
    let cache = &st.stills;
    let key = (id, width);
    if let Some(j) = cache.get(key, true) {
        return Ok(jpeg(j));
    }
    let _slot = match cache.decodes.try_acquire() {
        Ok(p) => p,
        Err(_) => {
            if let Some(j) = cache.get(key, false) {
                return Ok(jpeg(j));
            }
            tokio::time::timeout(WAIT_FOR_SLOT, cache.decodes.acquire())
                .await
                .map_err(|_| err(ErrorKind::Unavailable, "busy making other snapshots; try again"))?
                .map_err(|_| err(ErrorKind::Unavailable, "snapshots are shut down"))?
        }
    };
    // Made by another request while this one waited.
    if let Some(j) = cache.get(key, true) {
        return Ok(jpeg(j));
    }
    let cams = st.cameras.clone();
    let made = blocking("making a snapshot", move || cams.snapshot(id, StreamKind::Sub, width)).await?;
    match made {
        Ok(j) => {
            let j = Bytes::from(j);
            cache.put(key, j.clone());
            Ok(jpeg(j))
        }
        // The camera is listed but its stream has not started (or just stopped).
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Unavailable) => {
            Err(err(ErrorKind::Unavailable, &format!("no picture from this camera yet: {}", e.message())))
        }
        Err(e) => Err(e.into()),
    }
}
