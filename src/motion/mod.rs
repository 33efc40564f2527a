//! The motion detector: pure and I/O-free (no GStreamer, no database, no clock).
//!
//! Owns: turning a camera's small GRAY8 frames (the hub's decode branch delivers 320x180
//! at `[motion] fps`, 5 by default) into one [`Observation`] per frame — a score, the
//! include zones hit, and `Started`/`Ended` [`Transition`]s — plus the per-camera
//! settings ([`DetectorConfig`]: sensitivity, persistence, zones and masks) and their
//! validation. May not: read files, touch the store, or know about clips; the events
//! layer turns transitions into events, and adds `post_roll_seconds` itself.
//!
//! How a frame is judged (details in `model.rs`):
//! 1. A background model per pixel (running average, time constant 5 s, slower where
//!    the pixel is in motion), corrected for a global brightness shift estimated as the
//!    median difference per brightness band — a slow sunrise, an auto-exposure step or
//!    gain change moves the median, a moving object does not.
//! 2. A pixel has changed when it differs from the corrected background by more than the
//!    pixel delta *and* a 4-neighbour changed the same way (noise does not come in pairs).
//! 3. A frame is over threshold when the changed pixels reach the minimum area, a
//!    fraction of the considered pixels (see [`thresholds`] for the sensitivity table).
//!    Its score is the changed fraction of the considered pixels.
//! 4. `start_frames` consecutive over-threshold frames start an event; `end_frames`
//!    consecutive frames under it end it.
//!
//! The first [`WARMUP_FRAMES`] frames after creation, [`Detector::reset`] or a change of
//! resolution only teach the background. Cost: three passes over the frame and no
//! allocation per frame (buffers are made once per resolution); about 0.13 ms for
//! 320x180 in release mode on one x86-64 core (the ignored test `motion::tests::timing`).
//!
//! Timestamps (`ts_ms`) may come from any millisecond clock that moves forward with the
//! frames (wall-clock or stream time): they set the learning rate (from the interval
//! between frames) and are handed back in the transitions; nothing else reads a clock.

pub mod config;
mod model;
pub mod zone;

#[cfg(test)]
mod tests;

pub use config::{ConfigError, DetectorConfig, MAX_PERSISTENCE_FRAMES, Thresholds, thresholds};
pub use model::{MAX_PIXELS, WARMUP_FRAMES};
pub use zone::{MAX_ZONES, Zone, ZoneError, ZoneKind, ZoneProblem, ZoneSet, contains, validate_zones};

use model::{Frame, Model};

/// A change of the camera's motion state, reported on the frame that decides it.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Reported on the `start_frames`-th consecutive over-threshold frame; `at_ms` is the
    /// timestamp of the *first* of them (when the movement began), so it lies
    /// `(start_frames - 1)` frame intervals before the frame that reports it.
    Started {
        at_ms: i64,
        /// Include zones hit so far (names; empty when the camera has none).
        zones_hit: Vec<String>,
    },
    /// Reported on the `end_frames`-th consecutive still frame (or on a reset or a
    /// resolution change during an event); `at_ms` is the timestamp of the *last*
    /// over-threshold frame, i.e. when the movement stopped.
    Ended {
        at_ms: i64,
        /// Highest score of the event, 0..=1.
        peak_score: f32,
        /// Timestamp of the frame with that score.
        peak_at_ms: i64,
        /// Every include zone hit during the event (names).
        zones_hit: Vec<String>,
    },
}

/// What the detector made of one frame. Only `transition` ever holds heap memory, and
/// only on the rare frame that starts or ends an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Changed fraction of the considered pixels, 0..=1 (0 while warming up).
    pub score: f32,
    /// This frame alone reached the minimum area.
    pub over_threshold: bool,
    /// An event is in progress after this frame (true from the `Started` frame up to the
    /// frame before `Ended`).
    pub moving: bool,
    /// This over-threshold frame has the highest score of the current run (a pending or
    /// running event): the best moment for a thumbnail so far.
    pub new_peak: bool,
    /// The background is still being learnt; nothing is detected.
    pub warming_up: bool,
    /// The frame did not fit its width/height/stride and was ignored (no state changed).
    pub rejected: bool,
    /// Include zones hit in this frame: on an over-threshold frame, those holding at
    /// least a quarter of the minimum area's worth of changed pixels. Indices into the
    /// config's zones: see [`Detector::zone_names`].
    pub zones_hit: ZoneSet,
    pub transition: Option<Transition>,
}

/// One camera's detector. Feed it every frame of the decode branch, in order.
pub struct Detector {
    cfg: DetectorConfig,
    thr: Thresholds,
    model: Model,
    active: bool,
    /// Consecutive over-threshold frames (meaningful while not active).
    run: u32,
    /// Consecutive still frames (meaningful while active).
    still: u32,
    first_ms: i64,
    last_motion_ms: i64,
    peak: f32,
    peak_at_ms: i64,
    zones: ZoneSet,
    /// Zone names hit earlier in this event under a previous config.
    carried: Vec<String>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("cfg", &self.cfg)
            .field("thresholds", &self.thr)
            .field("dims", &self.model.dims())
            .field("warming_up", &self.model.warming_up())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Never fails: sensitivity and frame counts are clamped into range and bad zone
    /// points are dropped or clamped (run [`DetectorConfig::validate`] on user input).
    pub fn new(cfg: DetectorConfig) -> Detector {
        let cfg = Self::clamped(cfg);
        Detector {
            thr: thresholds(cfg.sensitivity),
            cfg,
            model: Model::new(),
            active: false,
            run: 0,
            still: 0,
            first_ms: 0,
            last_motion_ms: 0,
            peak: 0.0,
            peak_at_ms: 0,
            zones: ZoneSet::EMPTY,
            carried: Vec::new(),
        }
    }

    fn clamped(mut cfg: DetectorConfig) -> DetectorConfig {
        cfg.sensitivity = cfg.sensitivity.clamp(1, 10);
        cfg.start_frames = cfg.start_frames.clamp(1, MAX_PERSISTENCE_FRAMES);
        cfg.end_frames = cfg.end_frames.clamp(1, MAX_PERSISTENCE_FRAMES);
        cfg.zones.truncate(MAX_ZONES);
        cfg
    }

    /// The config in use (after clamping).
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    pub fn thresholds(&self) -> Thresholds {
        self.thr
    }

    /// True while an event is in progress.
    pub fn is_moving(&self) -> bool {
        self.active
    }

    /// The names of the zones in `set`, in config order.
    pub fn zone_names(&self, set: ZoneSet) -> impl Iterator<Item = &str> {
        set.iter().filter_map(|i| self.cfg.zones.get(i)).map(|z| z.name.as_str())
    }

    /// New settings (a user edited sensitivity or zones). Keeps the background model and
    /// a running event; zones hit so far in it stay reported at its end.
    pub fn reconfigure(&mut self, cfg: DetectorConfig) {
        let cfg = Self::clamped(cfg);
        if cfg.zones != self.cfg.zones {
            let names = self.names(self.zones);
            self.carried.extend(names);
            self.zones = ZoneSet::EMPTY;
        }
        self.thr = thresholds(cfg.sensitivity);
        self.cfg = cfg;
        self.model.configure(&self.cfg.zones, self.thr);
    }

    /// Forgets the background (call it when the stream restarts after a gap): the next
    /// [`WARMUP_FRAMES`] frames only teach it. Ends a running event.
    pub fn reset(&mut self) -> Option<Transition> {
        self.model.forget();
        self.end_now()
    }

    /// One tightly packed GRAY8 frame (`width * height` bytes; more are ignored).
    #[must_use]
    pub fn feed(&mut self, frame: &[u8], width: u32, height: u32, ts_ms: i64) -> Observation {
        self.feed_strided(frame, width, height, width, ts_ms)
    }

    /// One GRAY8 frame whose rows start `stride` bytes apart (GStreamer pads rows to a
    /// multiple of 4 bytes; 320 needs no padding). A frame that does not fit its sizes is
    /// rejected without touching any state. A new width or height resets the model
    /// (ending a running event in this observation) and starts a new warm-up.
    #[must_use]
    pub fn feed_strided(&mut self, frame: &[u8], width: u32, height: u32, stride: u32, ts_ms: i64) -> Observation {
        let mut obs = Observation {
            score: 0.0,
            over_threshold: false,
            moving: self.active,
            new_peak: false,
            warming_up: self.model.warming_up(),
            rejected: false,
            zones_hit: ZoneSet::EMPTY,
            transition: None,
        };
        let Some(frame) = Frame::new(frame, width, height, stride) else {
            obs.rejected = true;
            return obs;
        };
        if (frame.w, frame.h) != self.model.dims() {
            obs.transition = self.end_now();
            self.model.resize(frame.w, frame.h, &self.cfg.zones, self.thr);
        }
        let Some(r) = self.model.process(&frame, ts_ms) else {
            obs.warming_up = true;
            obs.moving = self.active;
            return obs;
        };
        obs.warming_up = false;
        obs.score = if r.considered == 0 { 0.0 } else { (r.changed as f64 / r.considered as f64) as f32 };
        obs.over_threshold = r.over;
        obs.zones_hit = r.zones;

        if r.over {
            if !self.active && self.run == 0 {
                self.first_ms = ts_ms;
                self.peak = 0.0;
                self.peak_at_ms = ts_ms;
                self.zones = ZoneSet::EMPTY;
                self.carried.clear();
            }
            self.run = self.run.saturating_add(1);
            self.still = 0;
            self.last_motion_ms = ts_ms;
            self.zones = self.zones.union(r.zones);
            if obs.score > self.peak {
                self.peak = obs.score;
                self.peak_at_ms = ts_ms;
                obs.new_peak = true;
            }
            if !self.active && self.run >= self.cfg.start_frames {
                self.active = true;
                obs.transition = Some(Transition::Started { at_ms: self.first_ms, zones_hit: self.event_zone_names() });
            }
        } else if self.active {
            self.still += 1;
            if self.still >= self.cfg.end_frames {
                obs.transition = self.end_now();
            }
        } else {
            self.run = 0;
        }
        obs.moving = self.active;
        obs
    }

    fn names(&self, set: ZoneSet) -> Vec<String> {
        self.zone_names(set).map(str::to_owned).collect()
    }

    fn event_zone_names(&self) -> Vec<String> {
        let mut names = self.carried.clone();
        for n in self.names(self.zones) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    /// Ends a running event now (`Ended` at the last motion); forgets a pending run.
    fn end_now(&mut self) -> Option<Transition> {
        let was_active = self.active;
        self.active = false;
        self.run = 0;
        self.still = 0;
        if !was_active {
            return None;
        }
        let t = Transition::Ended {
            at_ms: self.last_motion_ms,
            peak_score: self.peak,
            peak_at_ms: self.peak_at_ms,
            zones_hit: self.event_zone_names(),
        };
        self.zones = ZoneSet::EMPTY;
        self.carried.clear();
        Some(t)
    }
}
