//! `GET /api/cameras/{id}/live?stream=main|sub`: a camera's live stream over a WebSocket
//! as fragmented MP4 for Media Source Extensions. The server speaks, the client listens:
//! a text `init` (MIME type and size), the init segment, then one fragment (moof + mdat)
//! per access unit, the first at the feed's cached keyframe so the picture appears at
//! once. New stream parameters: a new `init` and init segment; the decode timeline goes
//! on without a jump. The camera gone: a text `error`, then close.
//!
//! Bounded: viewers per camera and in all, a send timeout per message (a stuck peer is
//! dropped), client messages capped in size; a viewer too slow for the stream is skipped
//! ahead to the next keyframe by the feed (never the pipeline waiting on it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;

use super::{ApiResult, AppState, Session, err, session};
use crate::camera::live::{Delivery, Feed, Params, StreamKind, Subscription, Unit};
use crate::error::ErrorKind;
use crate::fmp4;
use crate::shutdown::Shutdown;

/// Viewers of one camera (both streams together) and of the whole hub.
pub const MAX_VIEWERS_PER_CAMERA: u64 = 16;
pub const MAX_VIEWERS: usize = 64;
/// A message not written within this is a stuck peer: it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients send nothing but pings; anything bigger is refused by the WebSocket layer.
const MAX_CLIENT_MESSAGE: usize = 4096;
/// Live timescale (api11: 90 kHz).
const TIMESCALE: u32 = 90_000;

/// Live viewers of this process.
static VIEWERS: AtomicUsize = AtomicUsize::new(0);

/// A place among the hub's viewers, given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        let before = VIEWERS.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_VIEWERS {
            VIEWERS.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        VIEWERS.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LiveQuery {
    stream: Option<String>,
}

/// The main and sub feed of a camera, the same one once when it has no substream.
fn feeds_of(st: &AppState, camera_id: i64) -> Vec<Arc<Feed>> {
    let mut out: Vec<Arc<Feed>> = Vec::new();
    for kind in [StreamKind::Main, StreamKind::Sub] {
        if let Some(f) = st.cameras.feed(camera_id, kind)
            && !out.iter().any(|o| Arc::ptr_eq(o, &f))
        {
            out.push(f);
        }
    }
    out
}

/// Per camera: (id, viewers now, bytes sent to viewers), for `/metrics`.
pub(super) fn stats(st: &AppState) -> Vec<(i64, u64, u64)> {
    st.cameras
        .cameras()
        .iter()
        .map(|c| {
            let feeds = feeds_of(st, c.id);
            (c.id, feeds.iter().map(|f| f.viewers()).sum(), feeds.iter().map(|f| f.bytes_sent()).sum())
        })
        .collect()
}

/// A WebSocket from a page must come from our own origin: browsers do not apply CORS to
/// WebSockets, so without this any site could watch the cameras with the viewer's cookie.
fn same_origin(h: &HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN) else { return true }; // not a browser
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin.to_str().ok() == Some(format!("https://{host}").as_str())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn live(
    State(st): State<AppState>,
    ext: Option<axum::Extension<Session>>,
    UrlPath(id): UrlPath<i64>,
    q: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    shutdown: Option<axum::Extension<Shutdown>>,
    tracker: Option<axum::Extension<tokio_util::task::TaskTracker>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let s = session(ext)?;
    super::camera_access(&s, id, crate::store::Role::Viewer)?;
    if !same_origin(&headers) {
        return Err(err(ErrorKind::Forbidden, "live view from another origin"));
    }
    let Query(q) = q.map_err(|e| err(ErrorKind::Invalid, &e.body_text()))?;
    let kind = match q.stream.as_deref() {
        None | Some("main") => StreamKind::Main,
        Some("sub") => StreamKind::Sub,
        Some(other) => return Err(err(ErrorKind::Invalid, &format!("stream: expected main or sub, got {other:?}"))),
    };
    let feed = st.cameras.feed(id, kind).ok_or_else(|| err(ErrorKind::NotFound, "no such camera (or it is not running)"))?;
    let ws = ws.map_err(|e| err(ErrorKind::Invalid, &format!("expected a WebSocket upgrade: {}", e.body_text())))?;
    let watching: u64 = feeds_of(&st, id).iter().map(|f| f.viewers()).sum();
    if watching >= MAX_VIEWERS_PER_CAMERA {
        return Err(err(ErrorKind::Unavailable, &format!("this camera has {MAX_VIEWERS_PER_CAMERA} live viewers already")));
    }
    let slot =
        Slot::take().ok_or_else(|| err(ErrorKind::Unavailable, &format!("the hub has {MAX_VIEWERS} live viewers already")))?;
    let sub = feed.subscribe();
    let shutdown = shutdown.map(|s| s.0);
    // Counted with the connections the server waits for at shutdown.
    let token = tracker.map(|t| t.0.token());
    Ok(ws.max_message_size(MAX_CLIENT_MESSAGE).max_frame_size(MAX_CLIENT_MESSAGE).on_upgrade(move |socket| async move {
        let _held = (slot, token);
        let viewer = Viewer { socket, sub, camera_id: id, kind };
        viewer.run(shutdown).await;
    }))
}

/// Where each unit goes on the viewer's decode timeline (90 kHz ticks from its first unit).
/// The feed's timestamps are used as they are, except across a jump (a skip ahead, a
/// pipeline restart, new parameters): there the timeline goes on from the end of the last
/// sample, so the page's buffer never has a gap or goes backwards.
#[derive(Debug, Default)]
struct Timeline {
    base_dts_us: i64,
    base_ticks: u64,
    /// Where the last sample ended.
    end_ticks: u64,
    last_dts_us: Option<i64>,
    /// The last frame interval seen, for the duration of the next sample (unknown when it
    /// is sent: the frame after it has not come yet).
    last_delta_us: Option<i64>,
}

fn ticks(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0) * u64::from(TIMESCALE) / 1_000_000
}

impl Timeline {
    /// (decode time, duration) of `unit`.
    fn place(&mut self, unit: &Unit, params: &Params, jump: bool) -> (u64, u32) {
        let jump = jump
            || match self.last_dts_us {
                None => true,
                Some(last) => unit.dts_us <= last || unit.dts_us - last > 2_000_000,
            };
        if jump {
            self.base_dts_us = unit.dts_us;
            self.base_ticks = self.end_ticks;
        } else if let Some(last) = self.last_dts_us {
            self.last_delta_us = Some(unit.dts_us - last);
        }
        let decode = self.base_ticks + ticks(unit.dts_us - self.base_dts_us);
        let nominal = if params.fps > 0.5 { (1e6 / params.fps) as i64 } else { 33_333 };
        let delta = self.last_delta_us.filter(|d| (1_000..=1_000_000).contains(d)).unwrap_or(nominal);
        let duration = u32::try_from(ticks(delta)).unwrap_or(u32::MAX).max(1);
        self.end_ticks = decode + u64::from(duration);
        self.last_dts_us = Some(unit.dts_us);
        (decode, duration)
    }
}

struct Viewer {
    socket: WebSocket,
    sub: Subscription,
    camera_id: i64,
    kind: StreamKind,
}

/// Why a viewer's connection ended.
enum End {
    /// The peer left, was too slow to take a message, or the hub is stopping.
    Gone,
    /// Tell the page, then close.
    Error(String),
}

impl Viewer {
    async fn run(mut self, shutdown: Option<Shutdown>) {
        tracing::debug!(camera = self.camera_id, stream = self.kind.as_str(), "live viewer joined");
        let end = self.stream(shutdown).await;
        if let End::Error(why) = end {
            let text = serde_json::json!({ "type": "error", "error": why }).to_string();
            if self.send(Message::Text(text.into())).await {
                let _ = tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Close(None))).await;
            }
        }
        tracing::debug!(camera = self.camera_id, skips = self.sub.skips(), "live viewer left");
    }

    async fn stream(&mut self, shutdown: Option<Shutdown>) -> End {
        let stop = async {
            match &shutdown {
                Some(s) => s.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        let mut current: Option<Arc<Params>> = None;
        let mut fragmenter = fmp4::Fragmenter::new();
        let mut timeline = Timeline::default();
        loop {
            let d: Delivery = tokio::select! {
                d = self.sub.next() => match d {
                    Some(d) => d,
                    None => return End::Error("the camera went away".into()),
                },
                m = self.socket.recv() => match m {
                    // Pings are answered by the WebSocket layer; anything else is ignored.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Gone,
                    Some(Ok(_)) => continue,
                },
                _ = &mut stop => return End::Gone,
            };
            let mut jump = d.after_gap;
            if !current.as_ref().is_some_and(|p| Arc::ptr_eq(p, &d.params)) {
                if !d.unit.key {
                    continue; // frames of new parameters decode only from a keyframe
                }
                match self.send_init(&d.params).await {
                    Ok(true) => {}
                    Ok(false) => return End::Gone,
                    Err(e) => return End::Error(e),
                }
                current = Some(d.params.clone());
                fragmenter = fmp4::Fragmenter::new();
                jump = true;
            }
            let (decode_time, duration) = timeline.place(&d.unit, &d.params, jump);
            let cts = i32::try_from(ticks(d.unit.pts_us - d.unit.dts_us)).unwrap_or(0);
            let sample = fmp4::Sample { data: d.unit.data.clone(), duration, key: d.unit.key, cts_offset: cts };
            let frag = match fragmenter.fragment(decode_time, std::slice::from_ref(&sample)) {
                Ok(f) => f,
                Err(e) => return End::Error(format!("packaging the stream: {e}")),
            };
            if !self.send(Message::Binary(frag.into())).await {
                return End::Gone;
            }
            if !d.cached {
                // Read by tests/bench/live.sh: what the hub adds between the pipeline and the socket.
                tracing::trace!(target: "homehub::live::delay", camera = self.camera_id, delay_us = d.arrived.elapsed().as_micros() as u64);
            }
        }
    }

    /// The text `init` and the init segment; Ok(false) when the peer is gone.
    async fn send_init(&mut self, p: &Params) -> Result<bool, String> {
        let codecs = fmp4::codec_string(&p.avcc).map_err(|e| format!("stream parameters: {e}"))?;
        let track = fmp4::Track { width: p.width, height: p.height, timescale: TIMESCALE, avcc: p.avcc.clone() };
        let init = fmp4::init_segment(&track).map_err(|e| format!("init segment: {e}"))?;
        let text = serde_json::json!({
            "type": "init",
            "mime": format!("video/mp4; codecs=\"{codecs}\""),
            "width": p.width,
            "height": p.height,
        })
        .to_string();
        Ok(self.send(Message::Text(text.into())).await && self.send(Message::Binary(init.into())).await)
    }

    /// Writes one message within [`SEND_TIMEOUT`]; false when the peer is gone or stuck.
    async fn send(&mut self, msg: Message) -> bool {
        let len = match &msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(msg)).await {
            Ok(Ok(())) => {
                self.sub.feed().add_sent(len as u64);
                true
            }
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::info!(camera = self.camera_id, "live viewer dropped: a message took over 10 s to send");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn unit(dts_us: i64) -> Unit {
        Unit { data: Bytes::new(), dts_us, pts_us: dts_us, key: false, at_ms: 0 }
    }

    #[test]
    fn the_timeline_follows_the_stream_and_goes_on_across_jumps() {
        let p = Params { avcc: Bytes::new(), width: 1, height: 1, fps: 25.0 };
        let mut t = Timeline::default();
        // The first unit: at 0, nominal duration (25 fps = 3600 ticks).
        assert_eq!(t.place(&unit(5_000_000), &p, false), (0, 3600));
        // Then the observed interval (30 fps here).
        assert_eq!(t.place(&unit(5_033_333), &p, false), (2999, 2999));
        assert_eq!(t.place(&unit(5_066_666), &p, false).0, 5999);
        // A restart (timestamps start over) continues from where the last sample ended.
        let (d, _) = t.place(&unit(0), &p, false);
        assert_eq!(d, 5999 + 2999);
        // A skip ahead flagged by the feed: no gap either.
        let before = t.end_ticks;
        assert_eq!(t.place(&unit(4_000_000), &p, true).0, before);
    }

    #[test]
    fn only_our_own_origin_may_open_a_live_view() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "hub.local:8443".parse().unwrap());
        assert!(same_origin(&h), "no Origin: not a browser");
        h.insert(header::ORIGIN, "https://hub.local:8443".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, "http://hub.local:8443".parse().unwrap());
        assert!(!same_origin(&h));
    }

    #[test]
    fn the_hub_wide_viewer_cap_holds() {
        let slots: Vec<Slot> = std::iter::from_fn(Slot::take).take(MAX_VIEWERS + 1).collect();
        assert_eq!(slots.len(), MAX_VIEWERS);
        assert!(Slot::take().is_none());
        drop(slots);
        assert!(Slot::take().is_some());
    }
}
