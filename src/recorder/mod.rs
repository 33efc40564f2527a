//! Segment bookkeeping: what makes a file on disk a recording the hub knows about.
//!
//! Owns: the crash protocol (file fsync → directory fsync → then the row), recovery on
//! start (finish the garbage list, index playable partial segments, drop orphans), and
//! retention (age, `max_disk_gb`, `min_free_percent`; oldest first, through the garbage
//! list). Input: [`SegmentEvent`]s from the cameras. May not touch: GStreamer, the web.
//!
//! Invariants: a row exists only for a file whose bytes and directory entry are on
//! disk; a file is deleted only after its row has moved to the garbage list, so a power
//! cut never leaves a row without a file or a file nobody will delete.

pub mod export;
pub mod mp4;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::camera::{SegmentEvent, start_ms_from_file_name};
use crate::clock::Clock;
use crate::config::Recording;
use crate::error::{Error, Result, ResultExt};
use crate::store::{Segment, Store};

pub const RECORDINGS_DIR: &str = "recordings";
/// Retention runs at least this often, and after every closed segment.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// Where a camera's segments go.
pub fn camera_dir(data_dir: &Path, camera_id: i64) -> PathBuf {
    data_dir.join(RECORDINGS_DIR).join(camera_id.to_string())
}

/// What to keep.
#[derive(Debug, Clone)]
pub struct Retention {
    /// 0 = no age limit.
    pub retain_days: u32,
    /// 0 = no size limit; keep `min_free_percent` free instead.
    pub max_bytes: u64,
    pub min_free_percent: f64,
}

impl From<&Recording> for Retention {
    fn from(r: &Recording) -> Self {
        Retention { retain_days: r.retain_days, max_bytes: (r.max_disk_gb * 1e9) as u64, min_free_percent: r.min_free_percent }
    }
}

/// The recorder thread: indexes segments as cameras close them and applies retention.
/// It ends when every camera has dropped its sender, after handling what is queued.
pub fn spawn(store: Store, retention: Retention, clock: Clock, events: Receiver<SegmentEvent>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let rec = Recorder::new(store, retention, clock);
            let mut timer = RetentionTimer::new(rec.clock.monotonic());
            loop {
                match events.recv_timeout(Duration::from_secs(1)) {
                    Ok(ev) => {
                        let closed = !matches!(ev, SegmentEvent::Opened { .. });
                        rec.handle(ev);
                        if closed {
                            rec.apply_retention_logged();
                            timer.ran(rec.clock.monotonic());
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if timer.due(rec.clock.monotonic()) {
                    rec.apply_retention_logged();
                    timer.ran(rec.clock.monotonic());
                }
            }
        })
        .map_err(|e| Error::internal(format!("starting the recorder thread: {e}")))
}

/// When retention runs besides after each closed segment: [`RETENTION_EVERY`] after it
/// last ran, on the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct RetentionTimer {
    last: Duration,
}

impl RetentionTimer {
    fn new(now: Duration) -> Self {
        RetentionTimer { last: now }
    }
    fn due(&self, now: Duration) -> bool {
        now.saturating_sub(self.last) >= RETENTION_EVERY
    }
    fn ran(&mut self, now: Duration) {
        self.last = now;
    }
}

pub struct Recorder {
    store: Store,
    retention: Retention,
    /// "Older than `retain_days`" is measured on its wall time.
    clock: Clock,
}

impl Recorder {
    pub fn new(store: Store, retention: Retention, clock: Clock) -> Self {
        Recorder { store, retention, clock }
    }

    fn data_dir(&self) -> &Path {
        self.store.data_dir()
    }

    fn handle(&self, ev: SegmentEvent) {
        let r = match &ev {
            SegmentEvent::Opened { path, .. } => {
                tracing::debug!(path = %path.display(), "segment opened");
                Ok(())
            }
            SegmentEvent::Closed { camera_id, path, complete } => self.index(*camera_id, path, !complete),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "indexing segment failed");
        }
    }

    /// Makes a finished file durable and gives it a row. A partial file is first cut
    /// back to its last complete fragment; one with no complete fragment is removed.
    fn index(&self, camera_id: i64, path: &Path, partial: bool) -> Result<()> {
        let rel = path
            .strip_prefix(self.data_dir())
            .map_err(|_| Error::internal(format!("segment {} is outside the data dir", path.display())))?
            .to_string_lossy()
            .to_string();
        let start_ms = start_ms_from_file_name(path)
            .ok_or_else(|| Error::internal(format!("segment {} has no start time in its name", path.display())))?;
        let file = OpenOptions::new().read(true).write(true).open(path).ctx(format!("opening {}", path.display()))?;
        let len = file.metadata().ctx(format!("stat {}", path.display()))?.len();
        let scan = mp4::scan(len, |off, buf| file.read_exact_at(buf, off));
        let scan = match scan {
            Ok(s) if s.fragments > 0 => s,
            other => {
                let why = match other {
                    Err(e) => e,
                    Ok(_) => "no complete fragment".into(),
                };
                tracing::warn!(path = %path.display(), %why, "removing unplayable segment");
                drop(file);
                fs::remove_file(path).ctx(format!("removing {}", path.display()))?;
                sync_dir(path.parent().unwrap_or(Path::new("/")))?;
                return Ok(());
            }
        };
        let mut bytes = len;
        if scan.complete_end < len {
            file.set_len(scan.complete_end).ctx(format!("truncating {}", path.display()))?;
            bytes = scan.complete_end;
        }
        file.sync_all().ctx(format!("fsync {}", path.display()))?;
        drop(file);
        sync_dir(path.parent().unwrap_or(Path::new("/")))?;
        let seg = Segment { camera_id, path: rel, start_ms, end_ms: start_ms + scan.duration_ms(), bytes, partial };
        tracing::info!(path = %seg.path, ms = scan.duration_ms(), bytes, partial, "segment indexed");
        self.store.call_blocking(move |db| db.insert_segment(&seg))?;
        Ok(())
    }

    fn apply_retention_logged(&self) {
        if let Err(e) = self.apply_retention() {
            tracing::error!(error = %e, "retention failed");
        }
    }

    /// Deletes the oldest segments that are past `retain_days`, and then as many more
    /// as it takes to get under `max_bytes` (or above `min_free_percent` free).
    pub fn apply_retention(&self) -> Result<usize> {
        let now = self.clock.now_ms();
        let before_ms = match self.retention.retain_days {
            0 => i64::MIN,
            d => now - i64::from(d) * 86_400_000,
        };
        let need = if self.retention.max_bytes > 0 {
            let total = self.store.call_blocking(|db| db.media_bytes_total())?;
            total.saturating_sub(self.retention.max_bytes)
        } else {
            let (size, avail) = disk_space(self.data_dir())?;
            let want = (size as f64 * self.retention.min_free_percent / 100.0) as u64;
            want.saturating_sub(avail)
        };
        let victims = self.store.call_blocking(move |db| db.collect_old_media(before_ms, need, 1000))?;
        let mut removed = 0;
        if !victims.is_empty() {
            tracing::info!(count = victims.len(), "retention: removing old segments");
            removed = self.empty_garbage()?;
        }
        // Clips still waiting for the cloud are spared, unless the disk itself is about
        // to fill: then they go too (the store logs each loss as an error).
        let (size, avail) = disk_space(self.data_dir())?;
        let floor = (size as f64 * self.retention.min_free_percent / 100.0 / 2.0) as u64;
        let short = floor.saturating_sub(avail);
        if short > 0 {
            let victims = self.store.call_blocking(move |db| db.collect_old_media_with(i64::MIN, short, 1000, true))?;
            if !victims.is_empty() {
                tracing::error!(
                    count = victims.len(),
                    free = avail,
                    "retention: the disk is nearly full; removing media not yet uploaded"
                );
                removed += self.empty_garbage()?;
            }
        }
        Ok(removed)
    }

    /// Unlinks every file on the garbage list, syncs their directories, and then
    /// forgets the entries.
    pub fn empty_garbage(&self) -> Result<usize> {
        let garbage = self.store.call_blocking(|db| db.garbage())?;
        let mut dirs = HashSet::new();
        let mut done = Vec::new();
        for rel in garbage {
            let p = self.data_dir().join(&rel);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "cannot delete segment; will retry");
                    continue;
                }
            }
            if let Some(d) = p.parent() {
                dirs.insert(d.to_path_buf());
            }
            done.push(rel);
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        let n = done.len();
        self.store.call_blocking(move |db| db.garbage_done(&done))?;
        Ok(n)
    }

    /// Runs once at start, before any camera: finish deleting, index what a crash left
    /// half-written, remove files nobody will ever index, forget rows without files.
    pub fn recover(&self) -> Result<RecoveryReport> {
        let mut report = RecoveryReport { garbage: self.empty_garbage()?, ..Default::default() };
        let known: HashSet<String> = self.store.call_blocking(|db| db.segment_paths())?.into_iter().collect();
        let cameras: HashSet<i64> = self.store.call_blocking(|db| db.cameras())?.into_iter().map(|c| c.id).collect();
        let root = self.data_dir().join(RECORDINGS_DIR);
        let mut seen = HashSet::new();
        for cam_dir in read_dir_sorted(&root)? {
            let Some(camera_id) = cam_dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<i64>().ok()) else {
                continue;
            };
            for file in read_dir_sorted(&cam_dir)? {
                let rel = file.strip_prefix(self.data_dir()).expect("under data dir").to_string_lossy().to_string();
                if known.contains(&rel) {
                    seen.insert(rel);
                    continue;
                }
                let is_segment = file.extension().is_some_and(|e| e == "mp4") && start_ms_from_file_name(&file).is_some();
                if is_segment && cameras.contains(&camera_id) {
                    let before = file.exists();
                    self.index(camera_id, &file, true)?;
                    if before && file.exists() {
                        report.indexed_partial += 1;
                    } else {
                        report.removed_orphans += 1;
                    }
                } else {
                    tracing::warn!(path = %file.display(), "removing file that is not a segment of a known camera");
                    fs::remove_file(&file).ctx(format!("removing {}", file.display()))?;
                    sync_dir(&cam_dir)?;
                    report.removed_orphans += 1;
                }
            }
        }
        let missing: Vec<String> = known.difference(&seen).cloned().collect();
        if !missing.is_empty() {
            tracing::warn!(count = missing.len(), "segments whose files are gone; forgetting them");
            report.forgotten_rows = missing.len();
            self.store.call_blocking(move |db| db.delete_segment_rows(&missing))?;
        }
        Ok(report)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub garbage: usize,
    pub indexed_partial: usize,
    pub removed_orphans: usize,
    pub forgotten_rows: usize,
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::internal(format!("listing {}: {e}", dir.display()))),
    };
    let mut v: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Makes a directory's entries (new or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx(format!("fsync directory {}", dir.display()))
}

/// (size, available to us) of the file system holding `path`, in bytes.
pub fn disk_space(path: &Path) -> Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::invalid("path has a NUL byte"))?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::internal(format!("statvfs {}: {}", path.display(), std::io::Error::last_os_error())));
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DirLock, SegmentQuery};

    fn setup() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cams =
            store.call_blocking(|db| db.sync_config_cameras(&[("Porch".into(), "rtsp://h/a".into(), String::new())], 0)).unwrap();
        let id = cams[0].id;
        fs::create_dir_all(camera_dir(dir.path(), id)).unwrap();
        (dir, store, id)
    }

    fn retention(max_bytes: u64) -> Retention {
        Retention { retain_days: 0, max_bytes, min_free_percent: 0.0 }
    }

    #[test]
    fn recovery_indexes_partials_truncates_and_removes_orphans() {
        let (dir, store, cam) = setup();
        let _lock = DirLock::acquire(dir.path()).unwrap();
        let cdir = camera_dir(dir.path(), cam);
        // A partial segment cut mid-fragment, an unplayable one, and a stray file.
        let mut partial = mp4::tests::synthetic_file(2);
        let whole = partial.len();
        partial.truncate(whole - 20);
        fs::write(cdir.join("1000.mp4"), &partial).unwrap();
        fs::write(cdir.join("2000.mp4"), b"\0\0\0\x08ftyp").unwrap();
        fs::write(cdir.join("notes.txt"), b"x").unwrap();
        let rec = Recorder::new(store.clone(), retention(0), Clock::system());
        let report = rec.recover().unwrap();
        assert_eq!(report.indexed_partial, 1);
        assert_eq!(report.removed_orphans, 2);
        let segs = store.call_blocking(|db| db.segments(&SegmentQuery::default())).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].segment.start_ms, 1000);
        assert_eq!(segs[0].segment.end_ms, 2000);
        assert!(segs[0].segment.partial);
        let on_disk = fs::metadata(cdir.join("1000.mp4")).unwrap().len();
        assert_eq!(on_disk, segs[0].segment.bytes);
        assert_eq!(on_disk as usize, mp4::tests::synthetic_file(1).len());
        assert!(!cdir.join("2000.mp4").exists());
        assert!(!cdir.join("notes.txt").exists());
        // A second recovery finds nothing to do.
        assert_eq!(rec.recover().unwrap(), RecoveryReport::default());
    }

    #[test]
    fn rows_without_files_are_forgotten() {
        let (dir, store, cam) = setup();
        let f = camera_dir(dir.path(), cam).join("5000.mp4");
        fs::write(&f, mp4::tests::synthetic_file(1)).unwrap();
        let rec = Recorder::new(store.clone(), retention(0), Clock::system());
        rec.index(cam, &f, false).unwrap();
        fs::remove_file(&f).unwrap();
        assert_eq!(rec.recover().unwrap().forgotten_rows, 1);
        assert!(store.call_blocking(|db| db.segments(&SegmentQuery::default())).unwrap().is_empty());
    }

    #[test]
    fn retention_removes_oldest_first_down_to_the_limit() {
        let (dir, store, cam) = setup();
        let body = mp4::tests::synthetic_file(1);
        let rec = Recorder::new(store.clone(), retention(body.len() as u64 * 2), Clock::system());
        for start in [1000, 2000, 3000, 4000] {
            let f = camera_dir(dir.path(), cam).join(format!("{start}.mp4"));
            fs::write(&f, &body).unwrap();
            rec.index(cam, &f, false).unwrap();
        }
        rec.apply_retention().unwrap();
        let segs = store.call_blocking(|db| db.segments(&SegmentQuery::default())).unwrap();
        let starts: Vec<i64> = segs.iter().map(|s| s.segment.start_ms).collect();
        assert_eq!(starts, vec![3000, 4000]);
        assert!(!camera_dir(dir.path(), cam).join("1000.mp4").exists());
        assert!(!camera_dir(dir.path(), cam).join("2000.mp4").exists());
        assert!(camera_dir(dir.path(), cam).join("3000.mp4").exists());
        assert!(store.call_blocking(|db| db.garbage()).unwrap().is_empty());
    }

    #[test]
    fn retention_by_age_takes_segments_older_than_retain_days_as_the_clock_moves() {
        let (dir, store, cam) = setup();
        let day: i64 = 86_400_000;
        let tc = crate::clock::TestClock::at(1_700_000_000_000);
        let now = tc.now_ms();
        let rec = Recorder::new(store.clone(), Retention { retain_days: 2, max_bytes: 0, min_free_percent: 0.0 }, tc.clock());
        // One-second segments: one that ended just over two days ago, one that ended
        // exactly two days ago, and one a day old.
        let (old, limit, young) = (now - 2 * day - 1_001, now - 2 * day - 1_000, now - day);
        for start in [old, limit, young] {
            let f = camera_dir(dir.path(), cam).join(format!("{start}.mp4"));
            fs::write(&f, mp4::tests::synthetic_file(1)).unwrap();
            rec.index(cam, &f, false).unwrap();
        }
        let starts = || -> Vec<i64> {
            let segs = store.call_blocking(|db| db.segments(&SegmentQuery::default())).unwrap();
            segs.iter().map(|s| s.segment.start_ms).collect()
        };
        let on_disk = |start: i64| camera_dir(dir.path(), cam).join(format!("{start}.mp4")).exists();
        assert_eq!(rec.apply_retention().unwrap(), 1);
        assert_eq!(starts(), [limit, young]);
        assert!(!on_disk(old) && on_disk(limit) && on_disk(young));
        // A millisecond later the one at the limit is past it.
        tc.advance(Duration::from_millis(1));
        assert_eq!(rec.apply_retention().unwrap(), 1);
        assert_eq!(starts(), [young]);
        // The young one lives until it ended two days ago.
        tc.set_wall_ms(young + 1_000 + 2 * day);
        assert_eq!(rec.apply_retention().unwrap(), 0);
        tc.advance(Duration::from_millis(1));
        assert_eq!(rec.apply_retention().unwrap(), 1);
        assert!(starts().is_empty() && !on_disk(young));
        assert!(store.call_blocking(|db| db.garbage()).unwrap().is_empty());
    }

    #[test]
    fn retention_also_runs_every_thirty_seconds_of_monotonic_time() {
        let tc = crate::clock::TestClock::at(0);
        let mut timer = RetentionTimer::new(tc.monotonic());
        tc.advance(RETENTION_EVERY - Duration::from_millis(1));
        assert!(!timer.due(tc.monotonic()));
        // A wall-clock jump does not make it due.
        tc.set_wall_ms(i64::MAX / 2);
        assert!(!timer.due(tc.monotonic()));
        tc.advance(Duration::from_millis(1));
        assert!(timer.due(tc.monotonic()));
        timer.ran(tc.monotonic());
        assert!(!timer.due(tc.monotonic()));
    }

    #[test]
    fn a_crash_between_row_delete_and_unlink_is_finished_on_recovery() {
        let (dir, store, cam) = setup();
        let f = camera_dir(dir.path(), cam).join("1000.mp4");
        fs::write(&f, mp4::tests::synthetic_file(1)).unwrap();
        let rec = Recorder::new(store.clone(), retention(0), Clock::system());
        rec.index(cam, &f, false).unwrap();
        // Rows moved to the garbage list, then "power cut" before unlink.
        store.call_blocking(|db| db.collect_old_media(i64::MAX, 0, 10)).unwrap();
        assert!(f.exists());
        let report = rec.recover().unwrap();
        assert_eq!(report.garbage, 1);
        assert!(!f.exists());
        assert!(store.call_blocking(|db| db.garbage()).unwrap().is_empty());
    }
}
