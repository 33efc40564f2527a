//! Event clips: the pre-roll ring of recent encoded video and the clip writer.
//!
//! [`PreRoll`] keeps the last few seconds of the *encoded* H.264 stream in memory
//! (refcounted `gst::Buffer`s, no copies), trimmed so that a clip can always begin at a
//! keyframe at or before `now − pre_roll`. [`ClipWriter`] muxes such buffers, then live
//! ones, into one fragmented MP4 without re-encoding: `appsrc ! h264parse ! mp4mux !
//! filesink`. The ring logic is generic ([`Ring`]) so it is tested without GStreamer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::error::{Error, ErrorKind, Result};

/// Safety net on the ring, whatever the stream does (a camera that never sends a keyframe).
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_MAX_SPAN_MS: i64 = 60_000;
/// A wall clock that steps back more than this empties the ring (its times are void).
const CLOCK_STEP_BACK_MS: i64 = 1_000;
/// How long [`ClipWriter::finish`] waits for the muxer to write out the clip.
const FINISH_WAIT: Duration = Duration::from_secs(5);

struct Entry<T> {
    item: T,
    at_ms: i64,
    size: usize,
}

/// A keyframe-aligned ring of timestamped items. The front item is always a keyframe
/// (items before the first keyframe are useless to a clip and are not kept).
pub struct Ring<T> {
    pre_roll_ms: i64,
    max_bytes: usize,
    max_span_ms: i64,
    entries: VecDeque<Entry<T>>,
    /// Sequence number of `entries[0]`; an item's sequence number is its push count.
    head_seq: u64,
    /// Sequence numbers of the keyframes in `entries`, oldest first.
    keys: VecDeque<u64>,
    bytes: usize,
    newest_at_ms: Option<i64>,
}

impl<T: Clone> Ring<T> {
    pub fn new(pre_roll_ms: i64) -> Self {
        Self::with_limits(pre_roll_ms, DEFAULT_MAX_BYTES, DEFAULT_MAX_SPAN_MS)
    }

    pub fn with_limits(pre_roll_ms: i64, max_bytes: usize, max_span_ms: i64) -> Self {
        Ring {
            pre_roll_ms: pre_roll_ms.max(0),
            max_bytes,
            max_span_ms,
            entries: VecDeque::new(),
            head_seq: 0,
            keys: VecDeque::new(),
            bytes: 0,
            newest_at_ms: None,
        }
    }

    /// Adds the newest item and trims. `at_ms` is its wall-clock time; small steps back
    /// are clamped to the newest time, a big one empties the ring.
    pub fn push(&mut self, item: T, size: usize, key: bool, at_ms: i64) {
        let mut at_ms = at_ms;
        if let Some(newest) = self.newest_at_ms {
            if at_ms < newest - CLOCK_STEP_BACK_MS {
                self.clear();
            } else {
                at_ms = at_ms.max(newest);
            }
        }
        self.newest_at_ms = Some(at_ms);
        if self.entries.is_empty() && !key {
            return; // nothing to start a clip from before the first keyframe
        }
        let seq = self.head_seq + self.entries.len() as u64;
        if key {
            self.keys.push_back(seq);
        }
        self.entries.push_back(Entry { item, at_ms, size });
        self.bytes += size;
        self.trim(at_ms);
    }

    fn at_seq(&self, seq: u64) -> &Entry<T> {
        &self.entries[(seq - self.head_seq) as usize]
    }

    /// Drops everything before the keyframe with sequence number `seq`.
    fn drop_before(&mut self, seq: u64) {
        while self.head_seq < seq {
            let e = self.entries.pop_front().expect("entries up to a kept keyframe");
            self.bytes -= e.size;
            self.head_seq += 1;
        }
        while self.keys.front().is_some_and(|&k| k < seq) {
            self.keys.pop_front();
        }
    }

    fn trim(&mut self, newest_at_ms: i64) {
        let cutoff = newest_at_ms - self.pre_roll_ms;
        // The front keyframe is not needed once the next one is early enough itself.
        while self.keys.len() >= 2 && self.at_seq(self.keys[1]).at_ms <= cutoff {
            self.drop_before(self.keys[1]);
        }
        // Safety net: over the caps, drop whole GOPs from the front, and if one GOP alone
        // is over them, everything (the next keyframe starts afresh).
        while self.bytes > self.max_bytes || self.span_ms() > self.max_span_ms {
            if self.keys.len() >= 2 {
                self.drop_before(self.keys[1]);
            } else {
                let newest = self.newest_at_ms;
                self.clear();
                self.newest_at_ms = newest;
                break;
            }
        }
    }

    fn span_ms(&self) -> i64 {
        match (self.entries.front(), self.entries.back()) {
            (Some(a), Some(b)) => b.at_ms - a.at_ms,
            _ => 0,
        }
    }

    /// The items from the last keyframe at or before `at_ms` (or the first keyframe if
    /// none is that early) to the newest, with their times. Empty if there is no keyframe.
    pub fn start_from(&self, at_ms: i64) -> Vec<(T, i64)> {
        let Some(&first) = self.keys.front() else { return Vec::new() };
        let start = self.keys.iter().rev().copied().find(|&k| self.at_seq(k).at_ms <= at_ms).unwrap_or(first);
        let from = (start - self.head_seq) as usize;
        self.entries.range(from..).map(|e| (e.item.clone(), e.at_ms)).collect()
    }

    /// Sum of the sizes of the items held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Time of the oldest item held (always a keyframe).
    pub fn oldest_at_ms(&self) -> Option<i64> {
        self.entries.front().map(|e| e.at_ms)
    }

    pub fn newest_at_ms(&self) -> Option<i64> {
        self.newest_at_ms
    }

    pub fn clear(&mut self) {
        self.head_seq += self.entries.len() as u64;
        self.entries.clear();
        self.keys.clear();
        self.bytes = 0;
        self.newest_at_ms = None;
    }
}

/// The pre-roll of one camera: recent encoded H.264 access units and the caps they
/// came with. Not synchronised: keep it behind the caller's lock.
pub struct PreRoll {
    ring: Ring<gst::Buffer>,
    caps: Option<gst::Caps>,
}

impl PreRoll {
    /// Keeps at least `pre_roll_ms` (plus up to a GOP), within the default caps.
    pub fn new(pre_roll_ms: i64) -> Self {
        PreRoll { ring: Ring::new(pre_roll_ms), caps: None }
    }

    pub fn with_limits(pre_roll_ms: i64, max_bytes: usize, max_span_ms: i64) -> Self {
        PreRoll { ring: Ring::with_limits(pre_roll_ms, max_bytes, max_span_ms), caps: None }
    }

    /// Adds an encoded access unit (a refcounted clone is kept, not the data).
    pub fn push(&mut self, buf: gst::Buffer, at_ms: i64) {
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let size = buf.size();
        self.ring.push(buf, size, key, at_ms);
    }

    /// Adds the buffer of an appsink sample and remembers its caps; new caps (another
    /// resolution, new SPS/PPS in `codec_data`) empty the ring first, since the older
    /// buffers do not decode with them.
    pub fn push_sample(&mut self, sample: &gst::Sample, at_ms: i64) {
        if let Some(caps) = sample.caps()
            && self.caps.as_ref().is_none_or(|c| **c != *caps)
        {
            self.ring.clear();
            self.caps = Some(caps.to_owned());
        }
        if let Some(buf) = sample.buffer_owned() {
            self.push(buf, at_ms);
        }
    }

    /// The caps of the buffers held (set by [`PreRoll::push_sample`] or [`PreRoll::set_caps`]).
    pub fn caps(&self) -> Option<&gst::Caps> {
        self.caps.as_ref()
    }

    pub fn set_caps(&mut self, caps: gst::Caps) {
        if self.caps.as_ref().is_none_or(|c| *c != caps) {
            self.ring.clear();
            self.caps = Some(caps);
        }
    }

    /// See [`Ring::start_from`].
    pub fn start_from(&self, at_ms: i64) -> Vec<(gst::Buffer, i64)> {
        self.ring.start_from(at_ms)
    }

    /// Payload bytes held (for metrics).
    pub fn bytes(&self) -> usize {
        self.ring.bytes()
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn oldest_at_ms(&self) -> Option<i64> {
        self.ring.oldest_at_ms()
    }

    /// Forget everything (call when the camera's pipeline restarts: timestamps restart).
    pub fn clear(&mut self) {
        self.ring.clear();
        self.caps = None;
    }
}

/// Writes one MP4 clip from encoded buffers, without re-encoding.
pub struct ClipWriter {
    path: PathBuf,
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    state: Mutex<WriterState>,
}

struct WriterState {
    /// Subtracted from every timestamp (ns) so the clip starts at 0; set by the first
    /// buffer, moved when the input's timestamps jump (a restarted camera pipeline).
    offset: Option<i64>,
    /// DTS-or-PTS of the last buffer in, and of the same buffer out (ns).
    last_in: Option<i64>,
    last_out: i64,
    /// Interval between the last two buffers (ns); placed between the two sides of a jump.
    step: i64,
    pushed: u64,
    failed: Option<String>,
}

/// A jump forward this large in input timestamps is a new stream, not a gap (the camera
/// watchdog restarts a stream silent for 10 s).
const JUMP_NS: i64 = 10_000_000_000;

impl ClipWriter {
    /// Starts a clip at `path` with the caps of the encoded stream and pushes `first`
    /// (normally [`PreRoll::start_from`]). If `first` does not begin with a keyframe,
    /// buffers are skipped until one comes.
    pub fn start(path: &Path, caps: &gst::Caps, first: Vec<(gst::Buffer, i64)>) -> Result<ClipWriter> {
        let what = || format!("clip {}", path.display());
        let desc = "appsrc name=src format=time is-live=false block=false max-bytes=0 ! h264parse ! \
                    mp4mux fragment-duration=1000 ! filesink name=sink buffer-mode=2";
        let pipeline = gst::parse::launch(desc)
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("{}: building pipeline: {e}", what())))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| Error::internal(format!("{}: description did not give a pipeline", what())))?;
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| Error::internal(format!("{}: no appsrc", what())))?;
        let sink = pipeline.by_name("sink").ok_or_else(|| Error::internal(format!("{}: no filesink", what())))?;
        sink.set_property("location", path.to_string_lossy().to_string());
        appsrc.set_caps(Some(caps));
        let writer = ClipWriter {
            path: path.to_path_buf(),
            pipeline,
            appsrc,
            state: Mutex::new(WriterState {
                offset: None,
                last_in: None,
                last_out: 0,
                step: 33_333_333,
                pushed: 0,
                failed: None,
            }),
        };
        if let Err(e) = writer.pipeline.set_state(gst::State::Playing) {
            let _ = writer.pipeline.set_state(gst::State::Null);
            return Err(Error::new(ErrorKind::Unavailable, format!("{}: cannot start pipeline: {e}", what())));
        }
        for (buf, _) in first {
            writer.push(&buf)?;
        }
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Buffers pushed so far (after skipping any before the first keyframe).
    pub fn pushed(&self) -> u64 {
        self.state.lock().expect("clip state").pushed
    }

    /// Pushes a live buffer; never blocks (appsrc queues). Fails once the clip pipeline
    /// has failed (disk full, bad data).
    pub fn push(&self, buf: &gst::Buffer) -> Result<()> {
        let mut st = self.state.lock().expect("clip state");
        if st.failed.is_none()
            && let Some(msg) = self.pipeline.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
        {
            st.failed = Some(error_text(&msg));
        }
        if let Some(f) = &st.failed {
            return Err(Error::internal(format!("clip {}: {f}", self.path.display())));
        }
        let ns = |t: gst::ClockTime| t.nseconds() as i64;
        let t_in = buf.dts_or_pts().map(ns);
        let offset = match st.offset {
            Some(o) => o,
            None => {
                if buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    return Ok(()); // a clip must begin at a keyframe
                }
                let o = t_in.unwrap_or(0);
                st.offset = Some(o);
                o
            }
        };
        let offset = match (t_in, st.last_in) {
            (Some(t), Some(last)) if t < last || t - last > JUMP_NS => {
                // The input restarted its timestamps: continue one frame after the last.
                let o = t - (st.last_out + st.step);
                tracing::debug!(clip = %self.path.display(), from = last, to = t, "clip input timestamps jumped");
                st.offset = Some(o);
                o
            }
            (Some(t), Some(last)) => {
                if t > last {
                    st.step = t - last;
                }
                offset
            }
            _ => offset,
        };
        if let Some(t) = t_in {
            st.last_in = Some(t);
            st.last_out = t - offset;
        }
        let rebase = |t: gst::ClockTime| gst::ClockTime::from_nseconds((ns(t) - offset).max(0) as u64);
        let mut out = buf.copy();
        {
            let b = out.make_mut();
            let pts = buf.pts().map(rebase);
            let dts = buf.dts().map(|d| {
                let d = rebase(d);
                pts.map_or(d, |p| d.min(p))
            });
            b.set_pts(pts);
            b.set_dts(dts);
        }
        self.appsrc.push_buffer(out).map_err(|e| {
            st.failed = Some(format!("push: {e:?}"));
            Error::internal(format!("clip {}: pushing a buffer: {e:?}", self.path.display()))
        })?;
        st.pushed += 1;
        Ok(())
    }

    /// Ends the clip: EOS, waits (up to 5 s) for the muxer to write it out, stops the
    /// pipeline and fsyncs the file (the caller fsyncs the directory before the row).
    pub fn finish(self) -> Result<()> {
        let what = format!("clip {}", self.path.display());
        let failed = self.state.lock().expect("clip state").failed.take();
        let result = match failed {
            Some(f) => Err(Error::internal(format!("{what}: {f}"))),
            None => self.wait_eos(&what),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result?;
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::internal(format!("{what}: fsync: {e}")))
    }

    fn wait_eos(&self, what: &str) -> Result<()> {
        let _ = self.appsrc.end_of_stream();
        let bus = self.pipeline.bus().ok_or_else(|| Error::internal(format!("{what}: pipeline has no bus")))?;
        let until = Instant::now() + FINISH_WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::internal(format!("{what}: not finished within {} s", FINISH_WAIT.as_secs())));
            }
            let t = gst::ClockTime::from_nseconds(left.as_nanos() as u64);
            let Some(msg) = bus.timed_pop_filtered(t, &[gst::MessageType::Eos, gst::MessageType::Error]) else {
                continue;
            };
            return match msg.view() {
                gst::MessageView::Eos(_) => Ok(()),
                _ => Err(Error::internal(format!("{what}: {}", error_text(&msg)))),
            };
        }
    }
}

impl Drop for ClipWriter {
    fn drop(&mut self) {
        // finish() already did this; a writer dropped without it stops here (the file
        // keeps its complete fragments).
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn error_text(msg: &gst::Message) -> String {
    match msg.view() {
        gst::MessageView::Error(e) => {
            let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
            let dbg = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{src}: {}{dbg}", e.error())
        }
        _ => format!("{:?}", msg.type_()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `n` frames at `fps` with a keyframe every `gop` frames, `size` bytes each,
    /// starting at frame `from`; checks the invariants after each push.
    fn run(ring: &mut Ring<u64>, from: u64, n: u64, fps: i64, gop: u64, size: usize, check: impl Fn(&Ring<u64>)) {
        for i in from..from + n {
            ring.push(i, size, i % gop == 0, i as i64 * 1000 / fps);
            check(ring);
        }
    }

    #[test]
    fn trimming_keeps_a_keyframe_at_or_before_now_minus_pre_roll() {
        let pre_roll = 3000;
        let mut ring = Ring::new(pre_roll);
        // 25 fps, a keyframe every 2 s.
        run(&mut ring, 0, 10_000, 25, 50, 1000, |r| {
            let newest = r.newest_at_ms().unwrap();
            let oldest = r.oldest_at_ms().unwrap();
            if newest >= pre_roll {
                assert!(oldest <= newest - pre_roll, "oldest {oldest} newest {newest}");
                // and not more than a GOP earlier than needed
                assert!(oldest > newest - pre_roll - 2000, "oldest {oldest} newest {newest}");
            }
            let clip = r.start_from(newest - pre_roll);
            assert!(clip[0].0 % 50 == 0, "clip starts at a keyframe");
            assert!(clip[0].1 <= (newest - pre_roll).max(0));
        });
    }

    #[test]
    fn memory_stays_bounded_over_a_long_run() {
        // 3 s pre-roll, 1 s GOP at 30 fps, 20 KiB frames: at most (3 s + 1 GOP + 1 frame).
        let mut ring = Ring::new(3000);
        let bound = (4 * 30 + 1) * 20 * 1024;
        run(&mut ring, 0, 30 * 3600, 30, 30, 20 * 1024, |r| {
            assert!(r.bytes() <= bound, "{} > {bound}", r.bytes());
            assert_eq!(r.bytes(), r.len() * 20 * 1024);
        });
        // ...yet still the full pre-roll.
        assert!(ring.bytes() >= 3 * 30 * 20 * 1024);
    }

    #[test]
    fn the_hard_caps_hold_when_keyframes_never_come() {
        let mut ring = Ring::with_limits(3000, 1_000_000, 60_000);
        // One keyframe, then an hour of deltas.
        run(&mut ring, 0, 30 * 3600, 30, u64::MAX, 10_000, |r| assert!(r.bytes() <= 1_000_000));
        // By time: 10 s span cap with tiny frames.
        let mut ring = Ring::with_limits(3000, usize::MAX, 10_000);
        run(&mut ring, 0, 30 * 600, 30, 600, 10, |r| {
            if let (Some(a), Some(b)) = (r.oldest_at_ms(), r.newest_at_ms()) {
                assert!(b - a <= 10_000);
            }
        });
    }

    #[test]
    fn start_from_picks_the_last_keyframe_at_or_before() {
        let mut ring = Ring::new(100_000);
        // Items before the first keyframe are not kept.
        ring.push(100, 1, false, 0);
        assert!(ring.is_empty() && ring.start_from(0).is_empty());
        // 10 fps, keyframes at 1000, 2000, 3000 ms.
        for i in 10..40u64 {
            ring.push(i, 1, i % 10 == 0, i as i64 * 100);
        }
        assert_eq!(ring.start_from(2500)[0], (20, 2000));
        assert_eq!(ring.start_from(2000)[0], (20, 2000));
        assert_eq!(ring.start_from(1999)[0], (10, 1000));
        assert_eq!(ring.start_from(0)[0], (10, 1000), "nothing that early: the first keyframe");
        let all = ring.start_from(9999);
        assert_eq!(all[0], (30, 3000));
        assert_eq!(all.last().unwrap(), &(39, 3900));
        assert_eq!(all.len(), 10);
    }

    #[test]
    fn a_wall_clock_step_back_empties_the_ring() {
        let mut ring = Ring::new(3000);
        for i in 0..50u64 {
            ring.push(i, 1, i % 10 == 0, 1_000_000 + i as i64 * 100);
        }
        ring.push(50, 1, false, 10_000);
        assert!(ring.is_empty());
        ring.push(51, 1, true, 10_100);
        assert_eq!(ring.start_from(0), vec![(51, 10_100)]);
    }

    #[test]
    fn a_clip_that_cannot_be_written_names_its_path() {
        crate::camera::init().unwrap();
        let caps = gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build();
        let path = Path::new("/nonexistent-homehub-dir/clip.mp4");
        let e = ClipWriter::start(path, &caps, Vec::new()).err().expect("fails");
        assert!(e.message().contains("/nonexistent-homehub-dir/clip.mp4"), "{}", e.message());
    }

    fn ffprobe(args: &[&str], file: &Path) -> String {
        let out = std::process::Command::new("ffprobe").args(["-v", "error"]).args(args).arg(file).output().expect("ffprobe runs");
        assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_clip_from_the_pre_roll_and_live_buffers_is_playable_from_a_keyframe() {
        crate::camera::init().unwrap();
        let src = gst::parse::launch(
            "videotestsrc is-live=false num-buffers=150 ! video/x-raw,width=320,height=180,framerate=15/1 ! \
             x264enc key-int-max=15 tune=zerolatency speed-preset=ultrafast ! h264parse ! appsink name=s sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = src.by_name("s").unwrap().downcast::<gst_app::AppSink>().unwrap();
        src.set_state(gst::State::Playing).unwrap();
        let mut samples = Vec::new();
        while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
            samples.push(s);
        }
        src.set_state(gst::State::Null).unwrap();
        assert_eq!(samples.len(), 150);
        let at = |i: usize| i as i64 * 1000 / 15;

        // Frames 0..100 go through the pre-roll, 100..150 are "live".
        let pre_roll_ms = 3000;
        let mut pre = PreRoll::new(pre_roll_ms);
        for (i, s) in samples[..100].iter().enumerate() {
            pre.push_sample(s, at(i));
        }
        let newest = at(99);
        let oldest = pre.oldest_at_ms().unwrap();
        assert!(oldest <= newest - pre_roll_ms && oldest > newest - pre_roll_ms - 1000, "oldest {oldest}");
        eprintln!("pre-roll: {} buffers, {} bytes", pre.len(), pre.bytes());

        let first = pre.start_from(newest - pre_roll_ms);
        assert!(!first[0].0.flags().contains(gst::BufferFlags::DELTA_UNIT));
        assert_eq!(first[0].1, at(45), "the keyframe at frame 45 (3.0 s) is the last one ≤ 3.6 s");
        let n_first = first.len();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let caps = pre.caps().unwrap().clone();
        let w = ClipWriter::start(&path, &caps, first).unwrap();
        for (i, s) in samples[100..].iter().enumerate() {
            let mut buf = s.buffer_owned().unwrap();
            if i >= 20 {
                // As if the camera pipeline restarted: its timestamps begin again near 0
                // (frame 120 is a keyframe).
                let b = buf.make_mut();
                let back = gst::ClockTime::from_seconds(7);
                b.set_pts(b.pts().map(|t| t - back));
                b.set_dts(b.dts().map(|t| t - back));
            }
            w.push(&buf).unwrap();
        }
        let pushed = n_first + 50;
        assert_eq!(w.pushed(), pushed as u64);
        w.finish().unwrap();

        let dur: f64 = ffprobe(&["-show_entries", "format=duration", "-of", "csv=p=0"], &path).trim().parse().unwrap();
        let want = pushed as f64 / 15.0;
        assert!((dur - want).abs() <= 1.0 / 15.0 + 1e-3, "duration {dur}, pushed {pushed} frames = {want}");

        let frames = ffprobe(
            &["-select_streams", "v:0", "-show_entries", "frame=key_frame,pict_type", "-of", "csv=p=0"],
            &path,
        );
        let lines: Vec<&str> = frames.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), pushed, "every frame decodes");
        assert!(lines[0].starts_with("1,I"), "first frame: {}", lines[0]);
    }
}
