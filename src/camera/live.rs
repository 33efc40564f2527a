//! Live feeds: the encoded stream of one camera (main or substream) as plain access
//! units, for live viewers (the web's WebSocket), snapshots and colour thumbnails.
//! Each feed keeps the frames since its last keyframe, so a new viewer starts at once.
//!
//! The pipeline's streaming thread calls [`Feed::push`]; it never blocks on a viewer:
//! each [`Subscription`] has a bounded queue, and a viewer whose queue is full loses it
//! and resumes at the next keyframe (counted in [`Subscription::skips`]). Every bound is
//! in [`Limits`]; units are `Bytes`, so the cache and every queue share one copy.
//! No GStreamer here: the pipeline turns buffers into [`Unit`]s and caps into [`Params`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use bytes::Bytes;

use crate::sync::lock;

/// Which of a camera's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Main,
    /// The camera's low-resolution stream; a camera without one serves its main stream.
    Sub,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Main => "main",
            StreamKind::Sub => "sub",
        }
    }
}

/// What a decoder needs to start, from the stream's caps. A new `Arc` (new pointer)
/// means new parameters: a viewer must start over with a new init segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The AVCDecoderConfigurationRecord (GStreamer's `codec_data`, stream-format=avc).
    pub avcc: Bytes,
    pub width: u32,
    pub height: u32,
    /// Frames per second the caps announce; 0.0 when unknown.
    pub fps: f64,
}

/// One access unit as it came from the camera (never re-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Length-prefixed NAL units (stream-format=avc, alignment=au).
    pub data: Bytes,
    /// Decode and presentation time on the pipeline's clock, in microseconds.
    pub dts_us: i64,
    pub pts_us: i64,
    /// An IDR frame: decoding may start here.
    pub key: bool,
    /// Wall-clock time it reached the hub.
    pub at_ms: i64,
}

/// A keyframe and the frames after it, with the parameters to decode them.
#[derive(Debug, Clone)]
pub struct Gop {
    pub params: Arc<Params>,
    /// Starts with a keyframe.
    pub units: Vec<Unit>,
}

/// The bounds of one feed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The cached GOP: a longer one is dropped until the next keyframe.
    pub gop_bytes: usize,
    pub gop_us: i64,
    pub gop_units: usize,
    /// One viewer's queue of units not yet taken (beyond the cached GOP it started with).
    pub queue_bytes: usize,
    pub queue_units: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            gop_bytes: 8 << 20,
            gop_us: 10_000_000,
            gop_units: 1200,
            // About 4 s at 30 fps: a viewer further behind than that skips ahead.
            queue_bytes: 4 << 20,
            queue_units: 120,
        }
    }
}

/// One live stream of one camera.
#[derive(Debug, Default)]
pub struct Feed {
    limits: Limits,
    inner: Mutex<Inner>,
    viewers: AtomicU64,
    bytes_sent: AtomicU64,
    skips: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    params: Option<Arc<Params>>,
    /// Units since the last keyframe (empty: none yet, or the GOP outgrew the limits).
    gop: Vec<Unit>,
    gop_bytes: usize,
    subs: Vec<Weak<Shared>>,
    closed: bool,
}

/// What a viewer takes from its subscription.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub params: Arc<Params>,
    pub unit: Unit,
    /// The feed lost units for this viewer (it was too slow, or the stream restarted)
    /// just before this one: its timeline has a jump here. This unit is a keyframe.
    pub after_gap: bool,
    /// From the cached GOP a new viewer starts with (sent as fast as it can be).
    pub cached: bool,
    /// When the feed got the unit from the pipeline (the latency the hub adds is
    /// measured from here; for cached units, when the viewer subscribed).
    pub arrived: Instant,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    notify: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Delivery>,
    bytes: usize,
    /// Dropping units until the next keyframe.
    waiting_key: bool,
    /// The next unit queued starts after a gap.
    gap: bool,
    skips: u64,
    /// Skips, restarts and parameter changes: what the viewer has not yet taken of its
    /// first GOP is stale after one.
    resets: u64,
    closed: bool,
    /// The parameters of the last unit queued.
    last_params: Option<Arc<Params>>,
}

impl Feed {
    pub fn new() -> Self {
        Feed::default()
    }

    pub fn with_limits(limits: Limits) -> Self {
        Feed { limits, ..Feed::default() }
    }

    /// The latest keyframe and what followed it, if the stream has started.
    pub fn latest_gop(&self) -> Option<Gop> {
        let g = lock(&self.inner);
        let params = g.params.clone()?;
        (!g.gop.is_empty()).then(|| Gop { params, units: g.gop.clone() })
    }

    /// The stream's current parameters, once it has sent any.
    pub fn params(&self) -> Option<Arc<Params>> {
        lock(&self.inner).params.clone()
    }

    /// A new unit from the pipeline (its streaming thread: never blocks on a viewer).
    /// `params` is a new `Arc` only when the stream's parameters changed.
    pub fn push(&self, params: &Arc<Params>, unit: Unit) {
        let arrived = Instant::now();
        let mut g = lock(&self.inner);
        if g.closed {
            return;
        }
        let changed = !g.params.as_ref().is_some_and(|p| Arc::ptr_eq(p, params));
        if changed {
            g.params = Some(params.clone());
            g.gop.clear();
            g.gop_bytes = 0;
        }
        self.cache(&mut g, &unit);
        let d = Delivery { params: params.clone(), unit, after_gap: false, cached: false, arrived };
        let limits = self.limits;
        g.subs.retain(|w| {
            let Some(s) = w.upgrade() else { return false };
            let mut q = lock(&s.queue);
            if changed && !q.started_at(params) {
                // Frames of new parameters decode only from one of their keyframes on.
                q.waiting_key = true;
                q.gap = true;
            }
            if q.offer(d.clone(), &limits) {
                self.skips.fetch_add(1, Ordering::Relaxed);
            }
            drop(q);
            s.notify.notify_one();
            true
        });
    }

    fn cache(&self, g: &mut Inner, unit: &Unit) {
        let l = &self.limits;
        if unit.key {
            g.gop.clear();
            g.gop_bytes = 0;
        } else if g.gop.is_empty() {
            return; // no keyframe to start from
        }
        let first_dts = g.gop.first().map_or(unit.dts_us, |u| u.dts_us);
        if g.gop_bytes + unit.data.len() > l.gop_bytes || g.gop.len() >= l.gop_units || unit.dts_us - first_dts > l.gop_us {
            // Too long a GOP to hold: nothing cached until the next keyframe.
            g.gop.clear();
            g.gop_bytes = 0;
            return;
        }
        g.gop_bytes += unit.data.len();
        g.gop.push(unit.clone());
    }

    /// A new pipeline run: its timestamps start over, so the old GOP cannot be joined to
    /// it. Viewers stay subscribed; their next unit is a keyframe marked `after_gap`.
    pub fn restart(&self) {
        let mut g = lock(&self.inner);
        g.gop.clear();
        g.gop_bytes = 0;
        g.params = None;
        for s in g.subs.iter().filter_map(Weak::upgrade) {
            let mut q = lock(&s.queue);
            q.items.clear();
            q.bytes = 0;
            q.waiting_key = true;
            q.gap = true;
            q.resets += 1;
        }
    }

    /// The camera went away: every subscription ends once it has taken what is queued.
    pub fn close(&self) {
        let mut g = lock(&self.inner);
        g.closed = true;
        g.gop.clear();
        g.gop_bytes = 0;
        for s in std::mem::take(&mut g.subs).iter().filter_map(Weak::upgrade) {
            lock(&s.queue).closed = true;
            s.notify.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }

    /// A new viewer: first the cached GOP (so the picture appears at once), then every
    /// new unit. Without a cached GOP it starts at the next keyframe.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), notify: tokio::sync::Notify::new() });
        let mut g = lock(&self.inner);
        let now = Instant::now();
        let mut pending = VecDeque::new();
        {
            let mut q = lock(&shared.queue);
            q.closed = g.closed;
            match &g.params {
                Some(p) if !g.gop.is_empty() => {
                    pending.extend(g.gop.iter().map(|u| Delivery {
                        params: p.clone(),
                        unit: u.clone(),
                        after_gap: false,
                        cached: true,
                        arrived: now,
                    }));
                }
                _ => q.waiting_key = true,
            }
        }
        if !g.closed {
            g.subs.push(Arc::downgrade(&shared));
        }
        drop(g);
        self.viewers.fetch_add(1, Ordering::Relaxed);
        Subscription { feed: self.clone(), shared, pending, seen_resets: 0 }
    }

    /// Subscriptions open now.
    pub fn viewers(&self) -> u64 {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Counts bytes a viewer was sent (for `/metrics`).
    pub fn add_sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Times any viewer of this feed was skipped ahead to a keyframe.
    pub fn skips(&self) -> u64 {
        self.skips.load(Ordering::Relaxed)
    }

    /// Bytes held for the cached GOP.
    pub fn cached_bytes(&self) -> usize {
        lock(&self.inner).gop_bytes
    }
}

impl Queue {
    /// Whether the last unit queued already had `params` (the viewer is on them).
    fn started_at(&self, params: &Arc<Params>) -> bool {
        self.last_params.as_ref().is_some_and(|p| Arc::ptr_eq(p, params))
    }

    /// Queues `d` within `limits`; true when the queue overflowed (and was cleared).
    fn offer(&mut self, mut d: Delivery, limits: &Limits) -> bool {
        if self.closed {
            return false;
        }
        if self.waiting_key {
            if !d.unit.key {
                return false;
            }
            self.waiting_key = false;
        }
        let mut overflowed = false;
        if self.items.len() >= limits.queue_units || self.bytes + d.unit.data.len() > limits.queue_bytes {
            self.items.clear();
            self.bytes = 0;
            self.skips += 1;
            self.resets += 1;
            self.gap = true;
            overflowed = true;
            if !d.unit.key {
                self.waiting_key = true;
                return true;
            }
        }
        d.after_gap = std::mem::take(&mut self.gap);
        self.last_params = Some(d.params.clone());
        self.bytes += d.unit.data.len();
        self.items.push_back(d);
        overflowed
    }
}

/// One viewer of a feed. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    feed: Arc<Feed>,
    shared: Arc<Shared>,
    /// The cached GOP it started with.
    pending: VecDeque<Delivery>,
    seen_resets: u64,
}

impl Subscription {
    /// The next unit, without waiting; `Err(())` once the feed has closed and nothing is left.
    #[allow(clippy::result_unit_err)]
    pub fn try_next(&mut self) -> Result<Option<Delivery>, ()> {
        let mut q = lock(&self.shared.queue);
        if q.resets != self.seen_resets {
            // Skipped ahead (or the stream restarted): what is left of the first GOP is stale.
            self.seen_resets = q.resets;
            self.pending.clear();
        }
        if let Some(d) = self.pending.pop_front() {
            return Ok(Some(d));
        }
        if let Some(d) = q.items.pop_front() {
            q.bytes -= d.unit.data.len();
            return Ok(Some(d));
        }
        if q.closed { Err(()) } else { Ok(None) }
    }

    /// Waits for the next unit; `None` once the feed has closed (the camera went away).
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.try_next() {
                Ok(Some(d)) => return Some(d),
                Ok(None) => {}
                Err(()) => return None,
            }
            // A push between the check and here leaves a permit: no wakeup is lost.
            self.shared.notify.notified().await;
        }
    }

    /// Times this viewer was skipped ahead to a keyframe.
    pub fn skips(&self) -> u64 {
        lock(&self.shared.queue).skips
    }

    /// Bytes queued for this viewer (the GOP it started with not counted: it is shared
    /// with the feed's cache).
    pub fn queued_bytes(&self) -> usize {
        lock(&self.shared.queue).bytes
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feed.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(w: u32) -> Arc<Params> {
        Arc::new(Params { avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f]), width: w, height: 180, fps: 10.0 })
    }

    /// Frame `n` at 10 fps; a keyframe every `gop` frames; `size` bytes.
    fn unit(n: i64, gop: i64, size: usize) -> Unit {
        Unit {
            data: Bytes::from(vec![n as u8; size]),
            dts_us: n * 100_000,
            pts_us: n * 100_000,
            key: n % gop == 0,
            at_ms: 1_700_000_000_000 + n * 100,
        }
    }

    fn drain(s: &mut Subscription) -> Vec<Delivery> {
        std::iter::from_fn(|| s.try_next().ok().flatten()).collect()
    }

    fn frames(ds: &[Delivery]) -> Vec<i64> {
        ds.iter().map(|d| d.unit.dts_us / 100_000).collect()
    }

    #[test]
    fn a_new_viewer_starts_at_the_cached_keyframe_then_gets_each_new_unit() {
        let feed = Arc::new(Feed::new());
        assert!(feed.latest_gop().is_none());
        let p = params(320);
        for n in 0..13 {
            feed.push(&p, unit(n, 5, 100));
        }
        let gop = feed.latest_gop().unwrap();
        assert_eq!(gop.units.iter().map(|u| u.dts_us / 100_000).collect::<Vec<_>>(), [10, 11, 12]);
        assert!(gop.units[0].key);
        let mut s = feed.subscribe();
        assert_eq!(feed.viewers(), 1);
        feed.push(&p, unit(13, 5, 100));
        let got = drain(&mut s);
        assert_eq!(frames(&got), [10, 11, 12, 13]);
        assert!(got.iter().all(|d| Arc::ptr_eq(&d.params, &p) && !d.after_gap));
        drop(s);
        assert_eq!(feed.viewers(), 0);
    }

    #[test]
    fn a_viewer_before_the_first_keyframe_waits_for_one() {
        let feed = Arc::new(Feed::new());
        let p = params(320);
        feed.push(&p, unit(3, 5, 10)); // joined mid-GOP: no keyframe yet
        assert!(feed.latest_gop().is_none());
        let mut s = feed.subscribe();
        feed.push(&p, unit(4, 5, 10));
        assert!(drain(&mut s).is_empty());
        feed.push(&p, unit(5, 5, 10));
        feed.push(&p, unit(6, 5, 10));
        assert_eq!(frames(&drain(&mut s)), [5, 6]);
    }

    #[test]
    fn a_slow_viewer_is_skipped_ahead_to_the_next_keyframe() {
        let limits = Limits { queue_units: 8, ..Limits::default() };
        let feed = Arc::new(Feed::with_limits(limits));
        let p = params(320);
        feed.push(&p, unit(0, 5, 10));
        let mut slow = feed.subscribe();
        let mut fast = feed.subscribe();
        for n in 1..12 {
            feed.push(&p, unit(n, 5, 10));
            let _ = drain(&mut fast);
        }
        // slow held 0 (cached) then 1..=8 queued; 9 overflowed: cleared, waiting for 10.
        assert_eq!(slow.skips(), 1);
        assert_eq!(fast.skips(), 0);
        assert_eq!(feed.skips(), 1);
        let got = drain(&mut slow);
        assert_eq!(frames(&got), [10, 11], "the stale first GOP is dropped too");
        assert!(got[0].unit.key && got[0].after_gap && !got[1].after_gap);
    }

    #[test]
    fn memory_stays_bounded_for_a_viewer_that_never_reads() {
        let limits = Limits { queue_bytes: 10_000, queue_units: 1000, gop_bytes: 50_000, ..Limits::default() };
        let feed = Arc::new(Feed::with_limits(limits));
        let p = params(320);
        let s = feed.subscribe();
        for n in 0..2000 {
            feed.push(&p, unit(n, 30, 1000));
            assert!(s.queued_bytes() <= 10_000);
            assert!(feed.cached_bytes() <= 50_000);
        }
        assert!(s.skips() > 10);
        // A GOP beyond the cache's limit is not cached at all (no partial GOP to start from).
        let big = Arc::new(Feed::with_limits(Limits { gop_bytes: 5_000, ..Limits::default() }));
        for n in 0..8 {
            big.push(&p, unit(n, 100, 1000));
        }
        assert!(big.latest_gop().is_none());
        assert_eq!(big.cached_bytes(), 0);
        big.push(&p, unit(100, 100, 1000));
        assert_eq!(big.latest_gop().unwrap().units.len(), 1);
    }

    #[test]
    fn a_parameter_change_is_signalled_by_a_new_arc_and_starts_the_cache_over() {
        let feed = Arc::new(Feed::new());
        let (a, b) = (params(320), params(640));
        for n in 0..7 {
            feed.push(&a, unit(n, 5, 10));
        }
        let mut s = feed.subscribe();
        let _ = drain(&mut s);
        feed.push(&b, unit(7, 5, 10)); // not a keyframe: nothing to start the new GOP
        assert!(feed.latest_gop().is_none());
        feed.push(&b, unit(10, 5, 10));
        let gop = feed.latest_gop().unwrap();
        assert!(Arc::ptr_eq(&gop.params, &b));
        let got = drain(&mut s);
        assert!(got.iter().all(|d| Arc::ptr_eq(&d.params, &b)));
        assert_eq!(frames(&got), [10], "the new parameters start at their keyframe");
        assert!(got[0].after_gap);
    }

    #[test]
    fn a_restart_drops_the_cache_and_viewers_resume_at_a_keyframe() {
        let feed = Arc::new(Feed::new());
        let p = params(320);
        for n in 0..3 {
            feed.push(&p, unit(n, 5, 10));
        }
        let mut s = feed.subscribe();
        feed.restart();
        assert!(feed.latest_gop().is_none());
        let p2 = params(320);
        feed.push(&p2, unit(1, 5, 10));
        feed.push(&p2, unit(5, 5, 10));
        let got = drain(&mut s);
        assert_eq!(frames(&got), [5]);
        assert!(got[0].after_gap);
    }

    #[tokio::test]
    async fn a_waiting_viewer_wakes_for_a_unit_and_ends_when_the_feed_closes() {
        let feed = Arc::new(Feed::new());
        let p = params(320);
        let mut s = feed.subscribe();
        let f = feed.clone();
        let pusher = std::thread::spawn(move || {
            f.push(&p, unit(0, 5, 10));
            f.close();
        });
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), s.next()).await.unwrap();
        assert_eq!(first.map(|d| d.unit.dts_us), Some(0));
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), s.next()).await.unwrap();
        assert!(end.is_none());
        pusher.join().unwrap();
        assert!(feed.subscribe().try_next().is_err(), "a closed feed takes no new viewers");
    }
}
