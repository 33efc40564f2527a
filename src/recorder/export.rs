//! A time range of one camera's recording as one fragmented MP4, assembled from its
//! segment files without re-encoding.
//!
//! The output is the init segment of the first file that has footage in the range, then
//! fragments (one per source GOP, at most [`FRAGMENT_MAX_MS`] each) whose decode times
//! run on without a gap across files. It starts at the keyframe at or before `start`
//! (a file's samples are placed on the wall clock from the start time in its row, the
//! moment the muxer opened it) and ends before the first sample at or after `end`. A
//! file whose stream parameters (avcC, size) differ from the first ends the export
//! there, with a log line. [`Export`] is an iterator producing one chunk at a time: the
//! range is never in memory, only one fragment's samples.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;

use crate::error::{Error, Result, ResultExt};
use crate::fmp4::read::{self, SampleInfo};
use crate::fmp4::{Fragmenter, Sample, Track, init_segment};

/// The longest range one export may span.
pub const MAX_RANGE_MS: i64 = 24 * 3600 * 1000;
/// A fragment holds at most one GOP and at most this much time.
pub const FRAGMENT_MAX_MS: u64 = 1000;
/// A fragment holds at most this many bytes of samples (besides the one sample it
/// always holds), so a huge GOP never sits in memory whole.
pub const FRAGMENT_MAX_BYTES: u64 = 8 << 20;

/// Files closer than this are taken to be back to back (see `Open::index`).
pub const BACK_TO_BACK_MS: i64 = 3000;
/// How far before `start` a caller should look for segments: a file may be placed up to
/// [`BACK_TO_BACK_MS`] later than its row says.
pub const LOOK_BEHIND_MS: i64 = BACK_TO_BACK_MS;

/// One segment file and the wall time (ms) its first sample was recorded at.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub start_ms: i64,
}

/// Checks a requested range: `end` after `start`, at most [`MAX_RANGE_MS`].
pub fn check_range(start_ms: i64, end_ms: i64) -> Result<()> {
    if end_ms <= start_ms {
        return Err(Error::invalid("end: must be after start"));
    }
    if end_ms - start_ms > MAX_RANGE_MS {
        return Err(Error::invalid(format!(
            "end: the range may span at most 24 h, got {:.1} h",
            (end_ms - start_ms) as f64 / 3_600_000.0
        )));
    }
    Ok(())
}

/// An open segment and where the export is in it.
struct Open {
    file: File,
    path: PathBuf,
    start_ms: i64,
    track: Track,
    samples: Vec<SampleInfo>,
    /// Decode time of the file's first sample (its timeline may not start at 0).
    first_time: u64,
    next: usize,
}

impl Open {
    /// Indexes `seg`; `next` is the file after it. A camera's files follow each other back
    /// to back, but the first file of a pipeline run is named when it opens, up to a GOP
    /// before its first keyframe (the frames before it are dropped): when the next file
    /// begins less than [`BACK_TO_BACK_MS`] after this one would end, this one is placed
    /// to end where the next begins.
    fn index(seg: &SegmentFile, next: Option<&SegmentFile>) -> Result<Open> {
        let file = File::open(&seg.path).ctx(format!("opening {}", seg.path.display()))?;
        let len = file.metadata().ctx(format!("reading {}", seg.path.display()))?.len();
        let idx = read::index(len, |off, buf| file.read_exact_at(buf, off))
            .map_err(|e| e.context(format!("indexing {}", seg.path.display())))?;
        let first_time = idx.samples.first().map_or(0, |s| s.decode_time);
        let duration_ms = (idx.end_time().saturating_sub(first_time) as u128 * 1000 / idx.track.timescale as u128) as i64;
        let mut start_ms = seg.start_ms;
        if let Some(next) = next {
            let gap = next.start_ms - (start_ms + duration_ms);
            if gap > 0 && gap < BACK_TO_BACK_MS {
                start_ms = next.start_ms - duration_ms;
            }
        }
        Ok(Open { file, path: seg.path.clone(), start_ms, track: idx.track, samples: idx.samples, first_time, next: 0 })
    }

    /// Wall time (ms) of sample `i`.
    fn wall_ms(&self, i: usize) -> i64 {
        let ticks = self.samples[i].decode_time.saturating_sub(self.first_time) as u128;
        self.start_ms + (ticks * 1000 / self.track.timescale as u128) as i64
    }

    fn read(&self, s: &SampleInfo) -> Result<Bytes> {
        let mut buf = vec![0u8; s.size as usize];
        self.file.read_exact_at(&mut buf, s.offset).ctx(format!("reading {}", self.path.display()))?;
        Ok(buf.into())
    }
}

/// The chunks of one export, in order: the init segment, then fragments.
pub struct Export {
    files: VecDeque<SegmentFile>,
    end_ms: i64,
    track: Track,
    init: Option<Vec<u8>>,
    open: Option<Open>,
    fragmenter: Fragmenter,
    /// Decode time of the next output sample, in the output track's ticks.
    time: u64,
    done: bool,
    /// Samples written so far.
    pub samples: u64,
}

/// A keyframe this little after `start` counts as at `start`: a range asked for in whole
/// seconds often lands a hair before a keyframe, and starting a whole GOP earlier for it
/// would make the file a GOP longer than asked.
const START_SLACK_MS: i64 = 250;

impl Export {
    /// Prepares the export of [start_ms, end_ms) from `files` (one camera's, in order);
    /// None when none of them has footage in the range. Indexes the files that began by
    /// `start` (to find the last keyframe at or before it) or, when nothing was recorded
    /// at `start`, up to the first with a keyframe in the range; a file that cannot be
    /// read is skipped with a log line.
    pub fn open(files: Vec<SegmentFile>, start_ms: i64, end_ms: i64) -> Result<Option<Export>> {
        check_range(start_ms, end_ms)?;
        let mut files: VecDeque<SegmentFile> = files.into();
        // The last keyframe at or before start may be in any file that began by then.
        let mut best: Option<Open> = None;
        while let Some(seg) = files.pop_front() {
            if best.is_some() && seg.start_ms > start_ms + START_SLACK_MS {
                files.push_front(seg);
                break;
            }
            let mut open = match Open::index(&seg, files.front()) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "export: skipping a segment it cannot read");
                    continue;
                }
            };
            // A file that ended by start has nothing to show.
            let Some(last) = open.samples.len().checked_sub(1) else { continue };
            let last_end = open.wall_ms(last) + (open.samples[last].duration as u64 * 1000 / open.track.timescale as u64) as i64;
            if last_end <= start_ms {
                continue;
            }
            let in_range = (0..open.samples.len()).take_while(|&i| open.wall_ms(i) < end_ms);
            let keys: Vec<usize> = in_range.filter(|&i| open.samples[i].key).collect();
            if let Some(&k) = keys.iter().rev().find(|&&i| open.wall_ms(i) <= start_ms + START_SLACK_MS) {
                open.next = k;
                best = Some(open);
            } else if best.is_some() {
                files.push_front(seg);
                break;
            } else if let Some(&k) = keys.first() {
                // Nothing recorded at start: begin at the first keyframe after it.
                open.next = k;
                best = Some(open);
                break;
            }
        }
        let Some(open) = best else { return Ok(None) };
        let track = open.track.clone();
        Ok(Some(Export {
            files,
            end_ms,
            init: Some(init_segment(&track)?),
            track,
            open: Some(open),
            fragmenter: Fragmenter::new(),
            time: 0,
            done: false,
            samples: 0,
        }))
    }

    /// The output's track (that of the first file).
    pub fn track(&self) -> &Track {
        &self.track
    }

    /// The next segment to continue in, or None at the end (or at a parameter change).
    fn next_file(&mut self) -> Option<Open> {
        while let Some(seg) = self.files.pop_front() {
            let mut open = match Open::index(&seg, self.files.front()) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "export: skipping a segment it cannot read");
                    continue;
                }
            };
            let t = &open.track;
            if t.avcc != self.track.avcc || t.width != self.track.width || t.height != self.track.height {
                tracing::info!(
                    file = %seg.path.display(),
                    "export: the stream's parameters change in this segment; the export ends before it"
                );
                return None;
            }
            // Continue at its first keyframe (segments start with one).
            let Some(first) = open.samples.iter().position(|s| s.key) else { continue };
            open.next = first;
            return Some(open);
        }
        None
    }

    /// The next fragment, or None at the end.
    fn fragment(&mut self) -> Result<Option<Vec<u8>>> {
        let out_ts = self.track.timescale as u64;
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(open) = &mut self.open else {
                self.open = self.next_file();
                if self.open.is_none() {
                    self.done = true;
                }
                continue;
            };
            let in_ts = open.track.timescale as u64;
            let (mut group, mut ticks, mut bytes) = (Vec::new(), 0u64, 0u64);
            while open.next < open.samples.len() {
                let i = open.next;
                if open.wall_ms(i) >= self.end_ms {
                    self.done = true;
                    break;
                }
                let s = open.samples[i];
                if !group.is_empty()
                    && (s.key || ticks * 1000 >= FRAGMENT_MAX_MS * out_ts || bytes + s.size as u64 > FRAGMENT_MAX_BYTES)
                {
                    break;
                }
                let rescale = |t: u64| if in_ts == out_ts { t } else { t * out_ts / in_ts };
                let duration = u32::try_from(rescale(s.duration as u64)).unwrap_or(u32::MAX);
                let cts_offset =
                    if in_ts == out_ts { s.cts_offset } else { (s.cts_offset as i64 * out_ts as i64 / in_ts as i64) as i32 };
                group.push(Sample { data: open.read(&s)?, duration, key: s.key, cts_offset });
                ticks += duration as u64;
                bytes += s.size as u64;
                open.next += 1;
            }
            if group.is_empty() {
                if !self.done {
                    self.open = None; // this file is used up: on to the next
                }
                continue;
            }
            let frag = self.fragmenter.fragment(self.time, &group)?;
            self.time += ticks;
            self.samples += group.len() as u64;
            return Ok(Some(frag));
        }
    }
}

impl Iterator for Export {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Result<Bytes>> {
        if let Some(init) = self.init.take() {
            return Some(Ok(init.into()));
        }
        match self.fragment() {
            Ok(f) => f.map(|f| Ok(f.into())),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::read::index_bytes;
    use crate::fmp4::tests::gst_file;

    /// Three 4 s segments (60 frames at 15 fps, GOP 2 s) starting at 0, 4 and 8 s wall.
    fn segments(dir: &std::path::Path) -> Vec<SegmentFile> {
        (0..3)
            .map(|i| {
                let path = gst_file(dir, &format!("{}.mp4", i * 4000), 60, "bframes=0");
                SegmentFile { path, start_ms: 1_000_000 + i * 4000 }
            })
            .collect()
    }

    fn export(files: &[SegmentFile], start: i64, end: i64) -> (Vec<u8>, Vec<usize>) {
        let ex = Export::open(files.to_vec(), start, end).unwrap().expect("footage in range");
        let chunks: Vec<Bytes> = ex.map(|c| c.unwrap()).collect();
        (chunks.concat(), chunks.iter().map(|c| c.len()).collect())
    }

    #[test]
    fn a_range_across_two_boundaries_is_one_continuous_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = segments(dir.path());
        // 3 s .. 9 s: the keyframe at 2 s, to the last frame before 9 s.
        let (file, chunks) = export(&files, 1_003_000, 1_009_000);
        let idx = index_bytes(&file).unwrap();
        assert!(idx.samples[0].key, "starts at a keyframe");
        assert_eq!(idx.samples.len(), 7 * 15, "2 s .. 9 s at 15 fps");
        assert_eq!(idx.samples.iter().filter(|s| s.key).count(), 4, "keyframes at 2, 4, 6, 8 s");
        // Decode times run on without a gap.
        for w in idx.samples.windows(2) {
            assert_eq!(w[1].decode_time, w[0].decode_time + w[0].duration as u64);
        }
        assert_eq!(idx.samples[0].decode_time, 0);
        assert!(chunks.len() > 3, "init + a fragment per GOP or second, not one blob: {chunks:?}");
        let out = dir.path().join("out.mp4");
        std::fs::write(&out, &file).unwrap();
        let dur = crate_ffprobe_duration(&out);
        assert!((dur - 7.0).abs() < 0.05, "ffprobe says {dur} s");
    }

    fn crate_ffprobe_duration(p: &std::path::Path) -> f64 {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[test]
    fn start_on_a_keyframe_and_nothing_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let files = segments(dir.path());
        let (file, _) = export(&files, 1_004_000, 1_005_000);
        let idx = index_bytes(&file).unwrap();
        assert_eq!(idx.samples.len(), 15);
        // Before the first file: it starts at the first keyframe in the range.
        let (file, _) = export(&files, 999_000, 1_001_000);
        assert_eq!(index_bytes(&file).unwrap().samples.len(), 15);
        assert!(Export::open(files.clone(), 2_000_000, 2_001_000).unwrap().is_none(), "after the last file");
        assert!(Export::open(files.clone(), 900_000, 901_000).unwrap().is_none(), "before the first file");
        assert!(Export::open(files.clone(), 5, 5).is_err());
        let e = Export::open(files, 0, MAX_RANGE_MS + 1).err().unwrap();
        assert!(e.message().contains("24 h"), "{}", e.message());
    }

    #[test]
    fn a_file_named_before_its_first_keyframe_is_placed_back_to_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = segments(dir.path());
        // Named 2 s before its footage, as the first file of a pipeline run is.
        files[0].start_ms -= 2000;
        // 1.5 s .. 2.1 s of the first file: from its first keyframe (at 1 000 000 once
        // placed to end where the next file begins) to the 32nd frame.
        let (file, _) = export(&files, 1_001_500, 1_002_100);
        assert_eq!(index_bytes(&file).unwrap().samples.len(), 32);
        // A real gap (the camera was away) is left alone.
        files[0].start_ms -= 5000;
        let (file, _) = export(&files, 993_000 + 1_500, 993_000 + 2_100);
        assert_eq!(index_bytes(&file).unwrap().samples.len(), 32);
    }

    #[test]
    fn a_file_with_other_parameters_ends_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = segments(dir.path());
        let other = dir.path().join("other.mp4");
        let line = format!(
            "videotestsrc num-buffers=60 ! video/x-raw,width=160,height=120,framerate=15/1 ! x264enc key-int-max=30 \
             ! video/x-h264,stream-format=avc,alignment=au ! h264parse ! mp4mux fragment-duration=1000 ! filesink location={}",
            other.display()
        );
        assert!(std::process::Command::new("gst-launch-1.0").arg("-q").args(line.split_whitespace()).status().unwrap().success());
        files[1].path = other;
        let (file, _) = export(&files, 1_000_000, 1_012_000);
        assert_eq!(index_bytes(&file).unwrap().samples.len(), 60, "only the first file");
    }
}
