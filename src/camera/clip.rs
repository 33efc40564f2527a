//! Event clips: the pre-roll ring of recent encoded video and the clip writer.
//!
//! [`PreRoll`] keeps the last few seconds of the *encoded* H.264 stream in memory
//! (refcounted `gst::Buffer`s, no copies), trimmed so that a clip can always begin at a
//! keyframe at or before `now − pre_roll`, with the caps they came with. [`ClipWriter`]
//! muxes such buffers, then live ones, into one fragmented MP4 without re-encoding:
//! `appsrc ! h264parse ! mp4mux ! filesink`. The ring itself is [`super::ring::Ring`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::ring::Ring;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::lock;

/// How long [`ClipWriter::finish`] waits for the muxer to write out the clip.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// The pre-roll of one camera: recent encoded H.264 access units and the caps they
/// came with (the one copy of them). Not synchronised: keep it behind the caller's lock.
pub struct PreRoll {
    ring: Ring<gst::Buffer>,
    caps: Option<gst::Caps>,
}

impl PreRoll {
    /// Keeps at least `pre_roll_ms` (plus up to a GOP), within the ring's default caps.
    pub fn new(pre_roll_ms: i64) -> Self {
        PreRoll { ring: Ring::new(pre_roll_ms), caps: None }
    }

    /// Adds an encoded access unit (a refcounted clone is kept, not the data) with the
    /// caps it came with. New caps (another resolution, new SPS/PPS in `codec_data`)
    /// empty the ring first, since the older buffers do not decode with them.
    pub fn push(&mut self, buf: gst::Buffer, caps: Option<gst::Caps>, at_ms: i64) {
        if let Some(caps) = caps {
            let same = self.caps.as_ref().is_some_and(|c| c.as_ptr() == caps.as_ptr() || *c == caps);
            if !same {
                self.ring.clear();
                self.caps = Some(caps);
            }
        }
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let size = buf.size();
        self.ring.push(buf, size, key, at_ms);
    }

    /// The caps of the buffers held; None before the first caps (or after [`PreRoll::clear`]).
    pub fn caps(&self) -> Option<&gst::Caps> {
        self.caps.as_ref()
    }

    /// See [`Ring::start_from`].
    pub fn start_from(&self, at_ms: i64) -> Vec<(gst::Buffer, i64)> {
        self.ring.start_from(at_ms)
    }

    /// Payload bytes held (for metrics).
    pub fn bytes(&self) -> usize {
        self.ring.bytes()
    }

    /// Forget everything, caps included (call when the camera's pipeline restarts: its
    /// timestamps and parameters start over).
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
            state: Mutex::new(WriterState { offset: None, last_in: None, last_out: 0, step: 33_333_333, failed: None }),
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

    /// Pushes a live buffer; never blocks (appsrc queues). Fails once the clip pipeline
    /// has failed (disk full, bad data).
    pub fn push(&self, buf: &gst::Buffer) -> Result<()> {
        let mut st = lock(&self.state);
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
        Ok(())
    }

    /// Ends the clip: EOS, waits (up to 5 s) for the muxer to write it out, stops the
    /// pipeline and fsyncs the file (the caller fsyncs the directory before the row).
    pub fn finish(self) -> Result<()> {
        let what = format!("clip {}", self.path.display());
        let failed = lock(&self.state).failed.take();
        let result = match failed {
            Some(f) => Err(Error::internal(format!("{what}: {f}"))),
            None => self.wait_eos(&what),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result?;
        std::fs::File::open(&self.path).and_then(|f| f.sync_all()).map_err(|e| Error::internal(format!("{what}: fsync: {e}")))
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

    #[test]
    fn a_clip_that_cannot_be_written_names_its_path() {
        crate::camera::init().unwrap();
        let caps = gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build();
        let path = Path::new("/nonexistent-homehub-dir/clip.mp4");
        let e = ClipWriter::start(path, &caps, Vec::new()).err().expect("fails");
        assert!(e.message().contains("/nonexistent-homehub-dir/clip.mp4"), "{}", e.message());
    }

    fn ffprobe(args: &[&str], file: &Path) -> String {
        let out =
            std::process::Command::new("ffprobe").args(["-v", "error"]).args(args).arg(file).output().expect("ffprobe runs");
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
            pre.push(s.buffer_owned().unwrap(), s.caps_owned(), at(i));
        }
        let newest = at(99);
        let oldest = pre.start_from(i64::MIN)[0].1;
        assert!(oldest <= newest - pre_roll_ms && oldest > newest - pre_roll_ms - 1000, "oldest {oldest}");
        eprintln!("pre-roll: {} bytes", pre.bytes());

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
        w.finish().unwrap();

        let dur: f64 = ffprobe(&["-show_entries", "format=duration", "-of", "csv=p=0"], &path).trim().parse().unwrap();
        let want = pushed as f64 / 15.0;
        assert!((dur - want).abs() <= 1.0 / 15.0 + 1e-3, "duration {dur}, pushed {pushed} frames = {want}");

        let frames = ffprobe(&["-select_streams", "v:0", "-show_entries", "frame=key_frame,pict_type", "-of", "csv=p=0"], &path);
        let lines: Vec<&str> = frames.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), pushed, "every frame decodes");
        assert!(lines[0].starts_with("1,I"), "first frame: {}", lines[0]);
    }
}
