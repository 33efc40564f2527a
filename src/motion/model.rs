//! The per-pixel background model and the three passes over each frame.
//!
//! - The background is a running average per pixel in fixed point (grey × 256 in a u16),
//!   with a learning rate from the time between frames (time constant
//!   [`TIME_CONSTANT_MS`]), so it behaves the same at 2 or 15 fps. Pixels that differ
//!   from it learn [`FOREGROUND_SLOWDOWN`] times slower, so a passing object hardly
//!   stains the background, while an object that stays (a parked car) is absorbed
//!   within tens of seconds.
//! - Pass 1 estimates the global brightness shift: the median of (frame − background)
//!   in four bands of background brightness, on every fourth pixel of every second row,
//!   interpolated into a 256-entry table indexed by background grey. A median ignores a
//!   moving object covering less than half of a band; bands follow gain (exposure)
//!   changes, which shift bright pixels more than dark ones. This also cancels the lag
//!   of the running average behind a slow sunrise.
//! - Pass 2 marks each considered pixel +1/−1 when it is brighter/darker than the
//!   corrected background by more than the pixel delta, and updates the background.
//! - Pass 3 counts a marked pixel as changed only when one of its four neighbours has
//!   the same mark: independent sensor noise almost never comes in pairs.

use super::config::Thresholds;
use super::zone::{Zone, ZoneMap, ZoneSet};

/// Frames after a (re)start or a resolution change that only teach the background.
pub const WARMUP_FRAMES: u32 = 10;
/// Time constant of the background's running average, for still pixels.
pub const TIME_CONSTANT_MS: i64 = 5_000;
/// Pixels that differ from the background learn this many times slower.
pub const FOREGROUND_SLOWDOWN: i32 = 4;
/// Frame interval assumed before two timestamps are known, or when they go backwards.
pub const DEFAULT_INTERVAL_MS: i64 = 200;
/// Longer gaps between frames count as this long (the rate stays bounded).
const MAX_INTERVAL_MS: i64 = 2_000;
/// Largest frame accepted, in pixels (4096x4096); the hub sends 320x180.
pub const MAX_PIXELS: usize = 1 << 24;

/// Learning rates are fractions of `ONE`.
const FRAC_BITS: u32 = 12;
const ONE: i32 = 1 << FRAC_BITS;
const HALF: i32 = ONE / 2;

const BANDS: usize = 4;
const BAND_SHIFT: u32 = 6; // 256 / 4 grey levels per band
/// Signed difference −255..=255 → bin 0..=510.
const BINS: usize = 511;

/// One GRAY8 frame, already checked to hold `h` rows of `stride` bytes (the last row
/// may be only `w` long).
pub struct Frame<'a> {
    pub data: &'a [u8],
    pub w: usize,
    pub h: usize,
    pub stride: usize,
}

impl<'a> Frame<'a> {
    /// `None` when the sizes are zero, too large, or do not fit `data`.
    pub fn new(data: &'a [u8], width: u32, height: u32, stride: u32) -> Option<Frame<'a>> {
        let (w, h, stride) = (width as usize, height as usize, stride as usize);
        if w == 0 || h == 0 || stride < w || w.checked_mul(h)? > MAX_PIXELS {
            return None;
        }
        let needed = stride.checked_mul(h - 1)?.checked_add(w)?;
        (data.len() >= needed).then_some(Frame { data, w, h, stride })
    }
}

/// What one frame showed.
pub struct FrameResult {
    pub changed: usize,
    pub considered: usize,
    pub over: bool,
    /// Include zones with enough changed pixels; only filled when `over`.
    pub zones: ZoneSet,
}

pub struct Model {
    w: usize,
    h: usize,
    /// Frames learnt since the last reset (saturates at WARMUP_FRAMES).
    seen: u32,
    last_ts: Option<i64>,
    interval_ms: i64,
    /// Background, grey × 256.
    bg: Vec<u16>,
    /// Marks of pass 2 with a one-pixel border of zeros: (w + 2) × (h + 2).
    sign: Vec<i8>,
    /// Changed pixels of pass 3 (1/0), w × h; used to count per zone.
    fg: Vec<u8>,
    map: ZoneMap,
    /// Pixel delta × 256.
    delta: i32,
    min_px: usize,
    zone_min_px: usize,
    hist: Vec<u32>,
    /// Brightness correction × 256, by background grey.
    lut: [i32; 256],
}

impl Model {
    pub fn new() -> Model {
        Model {
            w: 0,
            h: 0,
            seen: 0,
            last_ts: None,
            interval_ms: DEFAULT_INTERVAL_MS,
            bg: Vec::new(),
            sign: Vec::new(),
            fg: Vec::new(),
            map: ZoneMap::default(),
            delta: 0,
            min_px: usize::MAX,
            zone_min_px: usize::MAX,
            hist: vec![0; 2 * BANDS * BINS],
            lut: [0; 256],
        }
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.w, self.h)
    }

    pub fn warming_up(&self) -> bool {
        self.seen < WARMUP_FRAMES
    }

    /// Forgets the background; the next frames warm it up again.
    pub fn forget(&mut self) {
        self.seen = 0;
        self.last_ts = None;
        self.interval_ms = DEFAULT_INTERVAL_MS;
    }

    /// New frame size: allocates every buffer once and forgets the background.
    pub fn resize(&mut self, w: usize, h: usize, zones: &[Zone], thr: Thresholds) {
        self.w = w;
        self.h = h;
        let n = w * h;
        self.bg = vec![0; n];
        self.sign = vec![0; (w + 2) * (h + 2)];
        self.fg = vec![0; n];
        self.forget();
        self.configure(zones, thr);
    }

    /// New zones or thresholds; keeps the background.
    pub fn configure(&mut self, zones: &[Zone], thr: Thresholds) {
        if self.w > 0 {
            self.map = ZoneMap::build(zones, self.w, self.h);
        }
        self.delta = i32::from(thr.pixel_delta) << 8;
        let area = (f64::from(thr.min_area) * self.map.considered_px as f64).ceil() as usize;
        self.min_px = area.max(4);
        self.zone_min_px = (self.min_px / 4).max(1);
    }

    /// Learns `frame` (which must have this model's size) and, after warm-up, says what
    /// changed. Allocates nothing.
    pub fn process(&mut self, frame: &Frame<'_>, ts_ms: i64) -> Option<FrameResult> {
        debug_assert_eq!((frame.w, frame.h), (self.w, self.h));
        let dt = match self.last_ts {
            Some(prev) if ts_ms > prev => ts_ms.saturating_sub(prev).min(MAX_INTERVAL_MS),
            _ => self.interval_ms,
        };
        self.interval_ms = dt;
        self.last_ts = Some(ts_ms);

        if self.seen < WARMUP_FRAMES {
            // A plain mean of the frames so far: the first frame is taken as it is.
            let rate = ONE / (self.seen as i32 + 1);
            self.learn_all(frame, rate);
            self.seen += 1;
            return None;
        }

        let rate = ((i64::from(ONE) * dt + TIME_CONSTANT_MS / 2) / TIME_CONSTANT_MS) as i32;
        let rate = rate.clamp(1, ONE / 4);
        let slow = (rate / FOREGROUND_SLOWDOWN).max(1);

        self.estimate_shift(frame);
        self.mark_and_learn(frame, rate, slow);
        let changed = self.count_changed();

        let considered = self.map.considered_px;
        let over = considered > 0 && changed >= self.min_px;
        let mut zones = ZoneSet::EMPTY;
        if over {
            for (index, spans) in &self.map.includes {
                let mut n = 0usize;
                for &(a, b) in spans {
                    n += self.fg[a as usize..b as usize].iter().map(|&v| usize::from(v)).sum::<usize>();
                }
                if n >= self.zone_min_px {
                    zones.insert(*index);
                }
            }
        }
        Some(FrameResult { changed, considered, over, zones })
    }

    fn row<'f>(frame: &Frame<'f>, y: usize) -> &'f [u8] {
        let start = y * frame.stride;
        &frame.data[start..start + frame.w]
    }

    fn learn_all(&mut self, frame: &Frame<'_>, rate: i32) {
        let w = self.w;
        for y in 0..self.h {
            let src = Self::row(frame, y);
            let bg = &mut self.bg[y * w..(y + 1) * w];
            for (&p, b) in src.iter().zip(bg.iter_mut()) {
                let g = i32::from(*b);
                let v = i32::from(p) << 8;
                *b = (g + (((v - g) * rate + HALF) >> FRAC_BITS)) as u16;
            }
        }
    }

    /// Pass 1: the brightness correction table.
    fn estimate_shift(&mut self, frame: &Frame<'_>) {
        // Every 4th pixel of every 2nd row (staggered), into two interleaved copies of
        // the histograms: in a still scene most samples hit the same bin, and one copy
        // would make each increment wait for the previous one.
        self.hist.fill(0);
        let w = self.w;
        let (even, odd) = self.hist.split_at_mut(BANDS * BINS);
        for y in (0..self.h).step_by(2) {
            let src = Self::row(frame, y);
            let bg = &self.bg[y * w..][..w];
            let cons = &self.map.considered[y * w..][..w];
            let mut x = (y / 2) % 4;
            let mut flip = false;
            while x < w {
                if cons[x] != 0 {
                    let g = ((u32::from(bg[x]) + 128) >> 8).min(255) as usize;
                    let d = usize::from(src[x]) + 255 - g;
                    let hist = if flip { &mut *odd } else { &mut *even };
                    hist[(g >> BAND_SHIFT) * BINS + d] += 1;
                    flip = !flip;
                }
                x += 4;
            }
        }
        for (e, o) in even.iter_mut().zip(odd.iter()) {
            *e += o;
        }

        let mut median = [None::<i32>; BANDS];
        let counts: [u32; BANDS] = std::array::from_fn(|b| self.hist[b * BINS..(b + 1) * BINS].iter().sum());
        let total: u32 = counts.iter().sum();
        let enough = (total / 50).max(16);
        for b in 0..BANDS {
            if counts[b] < enough {
                continue;
            }
            let half = counts[b].div_ceil(2);
            let mut acc = 0;
            for (bin, &n) in self.hist[b * BINS..(b + 1) * BINS].iter().enumerate() {
                acc += n;
                if acc >= half {
                    median[b] = Some(bin as i32 - 255);
                    break;
                }
            }
        }

        // Piecewise linear between the centres of the bands that have a median; flat
        // beyond the outermost ones; zero when no band has one.
        let centre = |b: usize| ((b << BAND_SHIFT) + (1 << (BAND_SHIFT - 1))) as i32;
        for (g, slot) in self.lut.iter_mut().enumerate() {
            let g = g as i32;
            let below = (0..BANDS).rev().find(|&b| median[b].is_some() && centre(b) <= g);
            let above = (0..BANDS).find(|&b| median[b].is_some() && centre(b) >= g);
            *slot = match (below, above) {
                (Some(lo), Some(hi)) if lo != hi => {
                    let (m0, m1) = (median[lo].unwrap_or(0) * 256, median[hi].unwrap_or(0) * 256);
                    let (c0, c1) = (centre(lo), centre(hi));
                    m0 + (m1 - m0) * (g - c0) / (c1 - c0)
                }
                (Some(b), _) | (None, Some(b)) => median[b].unwrap_or(0) * 256,
                (None, None) => 0,
            };
        }
    }

    /// Pass 2: marks and learning.
    fn mark_and_learn(&mut self, frame: &Frame<'_>, rate: i32, slow: i32) {
        let (w, pw) = (self.w, self.w + 2);
        let delta = self.delta;
        let lut = &self.lut;
        for y in 0..self.h {
            let src = Self::row(frame, y);
            let bg = &mut self.bg[y * w..][..w];
            let cons = &self.map.considered[y * w..][..w];
            let base = (y + 1) * pw + 1;
            let sign = &mut self.sign[base..][..w];
            for x in 0..w {
                let g = i32::from(bg[x]);
                let v = i32::from(src[x]) << 8;
                let d = v - g - lut[(g >> 8) as usize & 255];
                let mark = i8::from(d > delta) - i8::from(d < -delta);
                sign[x] = mark * cons[x] as i8;
                let r = if mark != 0 { slow } else { rate };
                bg[x] = (g + (((v - g) * r + HALF) >> FRAC_BITS)) as u16;
            }
        }
    }

    /// Pass 3: a mark counts when a 4-neighbour has the same mark.
    fn count_changed(&mut self) -> usize {
        let (w, pw) = (self.w, self.w + 2);
        let mut changed = 0usize;
        for y in 0..self.h {
            let base = (y + 1) * pw + 1;
            // Equal-length slices, so the loop has no bounds checks and vectorises.
            let up = &self.sign[base - pw..][..w];
            let left = &self.sign[base - 1..][..w];
            let cur = &self.sign[base..][..w];
            let right = &self.sign[base + 1..][..w];
            let down = &self.sign[base + pw..][..w];
            let fg = &mut self.fg[y * w..][..w];
            let mut row = 0u32;
            for x in 0..w {
                let s = cur[x];
                // Bitwise, not short-circuit: no branches.
                let hit = (s != 0) & ((s == left[x]) | (s == right[x]) | (s == up[x]) | (s == down[x]));
                fg[x] = u8::from(hit);
                row += u32::from(hit);
            }
            changed += row as usize;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::config::thresholds;

    #[test]
    fn frame_checks() {
        let data = vec![0u8; 108];
        assert!(Frame::new(&data[..100], 10, 10, 10).is_some());
        assert!(Frame::new(&data[..99], 10, 10, 10).is_none());
        assert!(Frame::new(&data[..108], 10, 10, 11).is_none(), "needs 9*11+10 bytes");
        assert!(Frame::new(&data[..108], 9, 10, 11).is_some(), "the last row may end at its width");
        assert!(Frame::new(&data[..107], 9, 10, 11).is_none());
        assert!(Frame::new(&data, 10, 10, 9).is_none(), "stride below width");
        assert!(Frame::new(&data, 0, 10, 10).is_none());
        assert!(Frame::new(&data, 10, 0, 10).is_none());
        assert!(Frame::new(&data, u32::MAX, u32::MAX, u32::MAX).is_none());
    }

    #[test]
    fn brightness_step_is_corrected_at_once() {
        let (w, h) = (64, 36);
        let mut m = Model::new();
        m.resize(w, h, &[], thresholds(5));
        let base: Vec<u8> = (0..w * h).map(|i| (40 + (i * 37 % 150)) as u8).collect();
        for t in 0..WARMUP_FRAMES as i64 {
            let f = Frame::new(&base, w as u32, h as u32, w as u32).unwrap();
            assert!(m.process(&f, t * 200).is_none());
        }
        // +60 everywhere: way over the pixel delta, but it is a global shift.
        let bright: Vec<u8> = base.iter().map(|&v| v + 60).collect();
        let f = Frame::new(&bright, w as u32, h as u32, w as u32).unwrap();
        let r = m.process(&f, 10 * 200).unwrap();
        assert_eq!(r.changed, 0);
        assert!(!r.over);
    }
}
