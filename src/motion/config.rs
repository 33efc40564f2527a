//! A camera's detector settings (sensitivity, persistence, zones), what the sensitivity
//! means in thresholds, and validation.

use serde::{Deserialize, Serialize};

use super::zone::{Zone, ZoneError, validate_zones};

pub const DEFAULT_SENSITIVITY: u8 = 5;
/// Consecutive frames over the thresholds before an event starts (0.6 s at 5 fps).
pub const DEFAULT_START_FRAMES: u32 = 3;
/// Consecutive still frames before an event ends (0.6 s at 5 fps); the events layer adds
/// `post_roll_seconds` on top.
pub const DEFAULT_END_FRAMES: u32 = 3;
/// Upper bound for `start_frames` and `end_frames`.
pub const MAX_PERSISTENCE_FRAMES: u32 = 100;

/// Per-camera detector settings. Serialises as JSON with every field optional
/// (missing fields take the defaults), e.g.
/// `{"sensitivity":5,"zones":[…],"start_frames":3,"end_frames":3}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// 1 (least sensitive) ..= 10 (most); see [`thresholds`]. Default 5.
    pub sensitivity: u8,
    /// Include zones and masks; see [`super::zone`].
    pub zones: Vec<Zone>,
    /// Consecutive over-threshold frames before `Started` (0 is taken as 1).
    pub start_frames: u32,
    /// Consecutive still frames before `Ended` (0 is taken as 1).
    pub end_frames: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            sensitivity: DEFAULT_SENSITIVITY,
            zones: Vec::new(),
            start_frames: DEFAULT_START_FRAMES,
            end_frames: DEFAULT_END_FRAMES,
        }
    }
}

/// A config that cannot be used; the message names the field or the zone.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("motion sensitivity must be 1..=10, got {0}")]
    Sensitivity(u8),
    #[error("motion start_frames must be 1..={MAX_PERSISTENCE_FRAMES}, got {0}")]
    StartFrames(u32),
    #[error("motion end_frames must be 1..={MAX_PERSISTENCE_FRAMES}, got {0}")]
    EndFrames(u32),
    #[error(transparent)]
    Zone(#[from] ZoneError),
}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> Self {
        crate::Error::invalid(e.to_string())
    }
}

impl DetectorConfig {
    /// Checks every field; [`super::Detector::new`] itself never fails (it clamps and
    /// sanitises), so call this where a user's input comes in.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10).contains(&self.sensitivity) {
            return Err(ConfigError::Sensitivity(self.sensitivity));
        }
        if !(1..=MAX_PERSISTENCE_FRAMES).contains(&self.start_frames) {
            return Err(ConfigError::StartFrames(self.start_frames));
        }
        if !(1..=MAX_PERSISTENCE_FRAMES).contains(&self.end_frames) {
            return Err(ConfigError::EndFrames(self.end_frames));
        }
        validate_zones(&self.zones)?;
        Ok(())
    }
}

/// What a sensitivity means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A pixel has changed when it differs from the background model (after the global
    /// brightness correction) by more than this many grey levels.
    pub pixel_delta: u8,
    /// A frame is over threshold when the changed pixels are at least this fraction of
    /// the considered pixels (and never fewer than 4 pixels).
    pub min_area: f32,
}

/// Sensitivity → thresholds, from 1 (least sensitive) to 10:
///
/// | sensitivity | 1 | 2 | 3 | 4 | **5** | 6 | 7 | 8 | 9 | 10 |
/// | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
/// | pixel delta (grey levels) | 45 | 40 | 35 | 30 | **26** | 23 | 20 | 18 | 16 | 14 |
/// | min changed area (%) | 4.0 | 3.2 | 2.6 | 2.1 | **1.7** | 1.4 | 1.2 | 1.0 | 0.8 | 0.65 |
///
/// Why: sensor noise of ±8 grey levels (Gaussian σ ≈ 4) stays under even the lowest
/// pixel delta (14 ≈ 3.5σ), and the default 26 is still > 3σ for σ = 8; a changed pixel
/// must also have a changed 4-neighbour of the same sign, which removes independent
/// noise almost entirely. The smallest area, 0.65 % (374 pixels at 320x180), is above a
/// 40x8 clock overlay (320 pixels); the default 1.7 % is about a 31x31 blob at 320x180.
/// Values outside 1..=10 are clamped.
pub fn thresholds(sensitivity: u8) -> Thresholds {
    const TABLE: [(u8, f32); 10] = [
        (45, 0.040),
        (40, 0.032),
        (35, 0.026),
        (30, 0.021),
        (26, 0.017),
        (23, 0.014),
        (20, 0.012),
        (18, 0.010),
        (16, 0.008),
        (14, 0.0065),
    ];
    let (pixel_delta, min_area) = TABLE[usize::from(sensitivity.clamp(1, 10) - 1)];
    Thresholds { pixel_delta, min_area }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::zone::ZoneKind;

    #[test]
    fn sensitivity_table_is_monotonic_and_clamped() {
        for s in 1..10u8 {
            let (a, b) = (thresholds(s), thresholds(s + 1));
            assert!(b.pixel_delta < a.pixel_delta, "delta at {s}");
            assert!(b.min_area < a.min_area, "area at {s}");
        }
        assert_eq!(thresholds(0), thresholds(1));
        assert_eq!(thresholds(200), thresholds(10));
        assert_eq!(thresholds(DEFAULT_SENSITIVITY), Thresholds { pixel_delta: 26, min_area: 0.017 });
    }

    #[test]
    fn validate_fields() {
        assert_eq!(DetectorConfig::default().validate(), Ok(()));
        let with = |f: fn(&mut DetectorConfig)| {
            let mut c = DetectorConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(with(|c| c.sensitivity = 0), "motion sensitivity must be 1..=10, got 0");
        assert_eq!(with(|c| c.sensitivity = 11), "motion sensitivity must be 1..=10, got 11");
        assert_eq!(with(|c| c.start_frames = 0), "motion start_frames must be 1..=100, got 0");
        assert_eq!(with(|c| c.end_frames = 101), "motion end_frames must be 1..=100, got 101");
        assert_eq!(
            with(|c| c.zones = vec![Zone { name: "a".into(), kind: ZoneKind::Mask, points: vec![] }]),
            "zone #1 `a`: a polygon needs at least 3 points, it has 0"
        );
    }

    #[test]
    fn json_defaults() {
        let c: DetectorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, DetectorConfig::default());
        let c: DetectorConfig = serde_json::from_str(r#"{"sensitivity":8}"#).unwrap();
        assert_eq!(c.sensitivity, 8);
        assert_eq!(c.start_frames, DEFAULT_START_FRAMES);
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"sensitivty":8}"#).is_err());
        let back: DetectorConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
