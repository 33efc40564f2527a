//! Zones and masks: polygons in normalised coordinates (0..=1, x to the right, y down),
//! their validation, the point-in-polygon rule, and their rasterisation to pixel spans.
//!
//! The inside rule is **even-odd at pixel centres**: pixel (x, y) of a `w`x`h` frame is
//! inside when the point ((x + 0.5) / w, (y + 0.5) / h) is, by the crossing-number test
//! with half-open edges. So a self-intersecting polygon (a bow tie, a pentagram) has holes
//! where it overlaps itself, and a square from 0 to 0.5 covers exactly the left/top half
//! of the pixels. [`contains`] and the scanline rasteriser share one crossing function,
//! so they agree bit for bit (tested).

use std::fmt;

use serde::{Deserialize, Serialize};

/// At most this many zones (include and mask together) per camera; [`ZoneSet`] is a u64.
pub const MAX_ZONES: usize = 64;
/// At most this many points per polygon.
pub const MAX_POINTS: usize = 256;
/// At most this many characters in a zone name.
pub const MAX_NAME_CHARS: usize = 64;
/// A polygon whose area (in normalised units, 1.0 = the whole frame) is below this is
/// degenerate: its points (nearly) lie on one line.
const MIN_AREA: f64 = 1e-6;

/// What a zone does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKind {
    /// When a camera has at least one include zone, only pixels inside an include zone
    /// count. Include zones are the ones reported in `zones_hit`.
    Include,
    /// Pixels inside a mask never count (a clock overlay, a tree, the neighbour's road).
    /// Masks win over include zones. The API (issue 11) calls them "exclude".
    #[serde(alias = "exclude")]
    Mask,
}

/// One polygon of a camera, stored by the store module as JSON:
/// `{"name":"driveway","kind":"include","points":[[0.1,0.5],[0.6,0.5],[0.6,1.0]]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    pub kind: ZoneKind,
    /// Vertices in order (either winding), normalised: (0, 0) is the top-left corner of
    /// the picture, (1, 1) the bottom-right. The polygon closes itself.
    pub points: Vec<(f32, f32)>,
}

/// What is wrong with one zone.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZoneProblem {
    #[error("the name is empty")]
    EmptyName,
    #[error("the name is longer than {MAX_NAME_CHARS} characters")]
    NameTooLong,
    #[error("the name contains a control character")]
    NameControl,
    #[error("the name is also used by zone #{0}")]
    DuplicateName(usize),
    #[error("a polygon needs at least 3 points, it has {0}")]
    TooFewPoints(usize),
    #[error("it has {0} points, at most {MAX_POINTS} are allowed")]
    TooManyPoints(usize),
    #[error("point {number} ({x}, {y}) is not a finite number")]
    NotFinite { number: usize, x: f32, y: f32 },
    #[error("point {number} ({x}, {y}) lies outside 0..=1")]
    OutOfRange { number: usize, x: f32, y: f32 },
    #[error("it encloses no area (its points lie on one line)")]
    NoArea,
}

/// A list of zones that cannot be used; the message names the zone.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneError {
    TooMany {
        count: usize,
    },
    /// `number` is 1-based, as a user counts; `name` as given (may be empty).
    Invalid {
        number: usize,
        name: String,
        problem: ZoneProblem,
    },
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneError::TooMany { count } => {
                write!(f, "at most {MAX_ZONES} zones per camera, got {count}")
            }
            ZoneError::Invalid { number, name, problem } if name.trim().is_empty() => {
                write!(f, "zone #{number}: {problem}")
            }
            ZoneError::Invalid { number, name, problem } => {
                write!(f, "zone #{number} `{}`: {problem}", name.escape_debug())
            }
        }
    }
}

impl std::error::Error for ZoneError {}

impl From<ZoneError> for crate::Error {
    fn from(e: ZoneError) -> Self {
        crate::Error::invalid(e.to_string())
    }
}

/// Checks a camera's zones: at most [`MAX_ZONES`]; each with a unique, non-empty name of
/// at most [`MAX_NAME_CHARS`] characters without control characters; 3..=[`MAX_POINTS`]
/// points, each finite and inside 0..=1; a non-zero area. Self-intersecting polygons are
/// allowed (even-odd rule).
pub fn validate_zones(zones: &[Zone]) -> Result<(), ZoneError> {
    if zones.len() > MAX_ZONES {
        return Err(ZoneError::TooMany { count: zones.len() });
    }
    for (i, z) in zones.iter().enumerate() {
        let bad = |problem| ZoneError::Invalid { number: i + 1, name: z.name.clone(), problem };
        if z.name.trim().is_empty() {
            return Err(bad(ZoneProblem::EmptyName));
        }
        if z.name.chars().count() > MAX_NAME_CHARS {
            return Err(bad(ZoneProblem::NameTooLong));
        }
        if z.name.chars().any(char::is_control) {
            return Err(bad(ZoneProblem::NameControl));
        }
        if let Some(j) = zones[..i].iter().position(|o| o.name == z.name) {
            return Err(bad(ZoneProblem::DuplicateName(j + 1)));
        }
        if z.points.len() < 3 {
            return Err(bad(ZoneProblem::TooFewPoints(z.points.len())));
        }
        if z.points.len() > MAX_POINTS {
            return Err(bad(ZoneProblem::TooManyPoints(z.points.len())));
        }
        for (k, &(x, y)) in z.points.iter().enumerate() {
            let number = k + 1;
            if !x.is_finite() || !y.is_finite() {
                return Err(bad(ZoneProblem::NotFinite { number, x, y }));
            }
            if !(0.0..=1.0).contains(&x) || !(0.0..=1.0).contains(&y) {
                return Err(bad(ZoneProblem::OutOfRange { number, x, y }));
            }
        }
        if area(&z.points).abs() < MIN_AREA {
            return Err(bad(ZoneProblem::NoArea));
        }
    }
    Ok(())
}

/// Signed area (shoelace) in normalised units.
fn area(points: &[(f32, f32)]) -> f64 {
    let n = points.len();
    let mut twice = 0.0f64;
    for i in 0..n {
        let (x0, y0) = points[i];
        let (x1, y1) = points[(i + 1) % n];
        twice += f64::from(x0) * f64::from(y1) - f64::from(x1) * f64::from(y0);
    }
    twice / 2.0
}

/// Where the edge a→b crosses the horizontal line at `y`, if it does. Half-open: an edge
/// counts when exactly one end lies strictly below `y` (greater y), so a vertex exactly
/// on the line is counted once and horizontal edges never.
#[inline]
fn edge_crossing(a: (f32, f32), b: (f32, f32), y: f64) -> Option<f64> {
    let (ax, ay) = (f64::from(a.0), f64::from(a.1));
    let (bx, by) = (f64::from(b.0), f64::from(b.1));
    if (ay > y) != (by > y) { Some(ax + (y - ay) * (bx - ax) / (by - ay)) } else { None }
}

/// Even-odd point-in-polygon test in normalised coordinates. Fewer than 3 points contain
/// nothing.
pub fn contains(points: &[(f32, f32)], x: f64, y: f64) -> bool {
    if points.len() < 3 {
        return false;
    }
    let mut inside = false;
    let mut prev = points[points.len() - 1];
    for &p in points {
        if let Some(cx) = edge_crossing(prev, p, y)
            && x < cx
        {
            inside = !inside;
        }
        prev = p;
    }
    inside
}

/// The centre of pixel `i` of `n`, normalised.
#[inline]
pub fn pixel_centre(i: usize, n: usize) -> f64 {
    (i as f64 + 0.5) / n as f64
}

/// A run of pixels `start..end` (row-major indices into a `w`x`h` frame).
pub(crate) type Span = (u32, u32);

/// The first pixel column whose centre is at or right of `c` (may be `w`).
fn first_column_at_or_after(c: f64, w: usize) -> usize {
    let guess = (c * w as f64 - 0.5).ceil();
    let mut x = if guess.is_nan() || guess <= 0.0 {
        0
    } else if guess >= w as f64 {
        w
    } else {
        guess as usize
    };
    // The guess is within one of the answer; settle it with the exact comparison that
    // `contains` makes, so the two never disagree on a boundary pixel.
    while x > 0 && pixel_centre(x - 1, w) >= c {
        x -= 1;
    }
    while x < w && pixel_centre(x, w) < c {
        x += 1;
    }
    x
}

/// The pixels of a `w`x`h` frame whose centres lie inside the polygon, as row spans.
/// `crossings` is scratch space (reused to avoid allocating per row).
pub(crate) fn rasterise(points: &[(f32, f32)], w: usize, h: usize, crossings: &mut Vec<f64>, out: &mut Vec<Span>) {
    out.clear();
    if points.len() < 3 || w == 0 || h == 0 {
        return;
    }
    for y in 0..h {
        let py = pixel_centre(y, h);
        crossings.clear();
        let mut prev = points[points.len() - 1];
        for &p in points {
            if let Some(cx) = edge_crossing(prev, p, py) {
                crossings.push(cx);
            }
            prev = p;
        }
        // NaN cannot occur for finite points (a crossing edge is never horizontal), but
        // total_cmp keeps this panic-free whatever the input.
        crossings.sort_unstable_by(f64::total_cmp);
        // Inside ⇔ an odd number of crossings lie strictly right of the centre ⇔ (the
        // count is even) the centre is in [c0, c1), [c2, c3), …
        for pair in crossings.chunks_exact(2) {
            let x0 = first_column_at_or_after(pair[0], w);
            let x1 = first_column_at_or_after(pair[1], w);
            if x1 > x0 {
                let row = (y * w) as u32;
                out.push((row + x0 as u32, row + x1 as u32));
            }
        }
    }
}

/// The zones reported for one frame or one event: a set of indices into the camera's
/// zone list (only include zones are ever in it). `Copy`, so an observation carries it
/// without allocating; [`super::Detector::zone_names`] turns it into names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ZoneSet(u64);

impl ZoneSet {
    pub const EMPTY: ZoneSet = ZoneSet(0);

    pub fn contains(self, index: usize) -> bool {
        index < MAX_ZONES && self.0 & (1u64 << index) != 0
    }
    /// Indices of [`MAX_ZONES`] or more are ignored.
    pub fn insert(&mut self, index: usize) {
        if index < MAX_ZONES {
            self.0 |= 1u64 << index;
        }
    }
    pub fn union(self, other: ZoneSet) -> ZoneSet {
        ZoneSet(self.0 | other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn bits(self) -> u64 {
        self.0
    }
    /// The indices in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

/// Which pixels count, precomputed once per (width, height, zones).
#[derive(Debug, Default)]
pub(crate) struct ZoneMap {
    /// 1 where a pixel counts, 0 where not; row-major, `w*h`.
    pub considered: Vec<u8>,
    pub considered_px: usize,
    /// Per include zone: its index in the zone list and its pixels.
    pub includes: Vec<(usize, Vec<Span>)>,
}

impl ZoneMap {
    /// Builds the map. Zones beyond [`MAX_ZONES`] and points that are not finite are
    /// ignored and coordinates are clamped to 0..=1, so this never fails; run
    /// [`validate_zones`] first to tell a user what is wrong.
    pub fn build(zones: &[Zone], w: usize, h: usize) -> ZoneMap {
        let n = w * h;
        let mut crossings = Vec::new();
        let mut spans = Vec::new();
        let zones = &zones[..zones.len().min(MAX_ZONES)];
        let sanitised: Vec<Vec<(f32, f32)>> = zones
            .iter()
            .map(|z| {
                z.points
                    .iter()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .map(|&(x, y)| (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0)))
                    .collect()
            })
            .collect();

        let any_include = zones.iter().any(|z| z.kind == ZoneKind::Include);
        let mut considered = vec![u8::from(!any_include); n];
        let mut includes = Vec::new();
        for (i, _) in zones.iter().enumerate().filter(|(_, z)| z.kind == ZoneKind::Include) {
            rasterise(&sanitised[i], w, h, &mut crossings, &mut spans);
            for &(a, b) in &spans {
                considered[a as usize..b as usize].fill(1);
            }
            includes.push((i, spans.clone()));
        }
        for (i, _) in zones.iter().enumerate().filter(|(_, z)| z.kind == ZoneKind::Mask) {
            rasterise(&sanitised[i], w, h, &mut crossings, &mut spans);
            for &(a, b) in &spans {
                considered[a as usize..b as usize].fill(0);
            }
        }
        let considered_px = considered.iter().map(|&c| c as usize).sum();
        ZoneMap { considered, considered_px, includes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, kind: ZoneKind, points: &[(f32, f32)]) -> Zone {
        Zone { name: name.into(), kind, points: points.to_vec() }
    }

    fn raster_set(points: &[(f32, f32)], w: usize, h: usize) -> Vec<bool> {
        let mut spans = Vec::new();
        rasterise(points, w, h, &mut Vec::new(), &mut spans);
        let mut set = vec![false; w * h];
        for (a, b) in spans {
            for s in &mut set[a as usize..b as usize] {
                assert!(!*s, "spans overlap");
                *s = true;
            }
        }
        set
    }

    fn brute_set(points: &[(f32, f32)], w: usize, h: usize) -> Vec<bool> {
        let mut set = vec![false; w * h];
        for y in 0..h {
            for x in 0..w {
                set[y * w + x] = contains(points, pixel_centre(x, w), pixel_centre(y, h));
            }
        }
        set
    }

    #[test]
    fn square_and_triangle() {
        let sq = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)];
        assert!(contains(&sq, 0.5, 0.5));
        assert!(!contains(&sq, 0.1, 0.5));
        assert!(!contains(&sq, 0.5, 0.9));
        assert!(!contains(&sq, 0.9, 0.9));
        let tri = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)];
        assert!(contains(&tri, 0.2, 0.2));
        assert!(!contains(&tri, 0.8, 0.8));
        // Either winding.
        let rev: Vec<_> = tri.iter().rev().copied().collect();
        assert!(contains(&rev, 0.2, 0.2));
        assert!(!contains(&rev, 0.8, 0.8));
    }

    #[test]
    fn concave_l_shape() {
        let l = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)];
        assert!(contains(&l, 0.25, 0.25));
        assert!(contains(&l, 0.75, 0.75));
        assert!(contains(&l, 0.25, 0.75));
        assert!(!contains(&l, 0.75, 0.25), "the notch is outside");
    }

    #[test]
    fn self_intersecting_uses_even_odd() {
        // Pentagram: the centre pentagon is covered twice, so even-odd leaves it out.
        let star: Vec<(f32, f32)> = (0..5)
            .map(|k| {
                let a = std::f32::consts::PI * (-0.5 + 0.8 * k as f32);
                (0.5 + 0.45 * a.cos(), 0.5 + 0.45 * a.sin())
            })
            .collect();
        assert!(!contains(&star, 0.5, 0.5), "centre of a pentagram is a hole");
        assert!(contains(&star, 0.5, 0.1), "a tip is inside");
        // Bow tie: the left and right lobes are inside, the top and bottom gaps not.
        let bow = [(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0)];
        assert!(contains(&bow, 0.2, 0.5));
        assert!(contains(&bow, 0.8, 0.5));
        assert!(!contains(&bow, 0.5, 0.2));
        assert!(!contains(&bow, 0.5, 0.8));
    }

    #[test]
    fn degenerate_input_contains_nothing() {
        assert!(!contains(&[], 0.5, 0.5));
        assert!(!contains(&[(0.0, 0.0), (1.0, 1.0)], 0.5, 0.5));
        // Not-a-number input gives some answer, never a panic.
        let _ = contains(&[(f32::NAN, 0.0), (1.0, 1.0), (0.0, 1.0)], 0.5, 0.5);
        let _ = raster_set(&[(f32::NAN, 0.0), (f32::INFINITY, 1.0), (0.0, f32::NEG_INFINITY)], 4, 4);
        assert_eq!(raster_set(&[(0.1, 0.1), (0.9, 0.1)], 4, 4), vec![false; 16]);
    }

    #[test]
    fn pixel_centre_rule_on_exact_boundaries() {
        // The left/top half of a 4x4 frame: exactly the 2x2 top-left pixels, no more.
        let half = [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)];
        let set = raster_set(&half, 4, 4);
        let expect: Vec<bool> = (0..16).map(|i| i % 4 < 2 && i / 4 < 2).collect();
        assert_eq!(set, expect);
        // The whole frame covers every pixel.
        let all = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)];
        assert_eq!(raster_set(&all, 7, 3), vec![true; 21]);
        // A polygon between two pixel centres covers nothing.
        let thin = [(0.26, 0.0), (0.37, 0.0), (0.37, 1.0), (0.26, 1.0)];
        assert_eq!(raster_set(&thin, 4, 4), vec![false; 16]);
        // A boundary exactly through a pixel centre includes it on the left edge only.
        let mid = [(0.125, 0.0), (0.625, 0.0), (0.625, 1.0), (0.125, 1.0)];
        let set = raster_set(&mid, 4, 1);
        assert_eq!(set, vec![true, true, false, false]);
    }

    #[test]
    fn rasteriser_agrees_with_point_test() {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..400 {
            let n = 3 + (next() % 9) as usize;
            // Snap some coordinates to a coarse grid so vertices land on pixel centres
            // and edges run exactly along rows.
            let coord = |v: u64| {
                if v.is_multiple_of(3) { (v % 9) as f32 / 8.0 } else { (v % 10_000) as f32 / 9_999.0 }
            };
            let points: Vec<(f32, f32)> = (0..n).map(|_| (coord(next()), coord(next()))).collect();
            for (w, h) in [(1, 1), (4, 4), (8, 3), (17, 11), (32, 18)] {
                assert_eq!(raster_set(&points, w, h), brute_set(&points, w, h), "{points:?} at {w}x{h}");
            }
        }
    }

    #[test]
    fn zone_map_includes_and_masks() {
        let (w, h) = (10, 10);
        // No zones: everything counts.
        let m = ZoneMap::build(&[], w, h);
        assert_eq!(m.considered_px, 100);
        // A mask alone removes its pixels.
        let mask = zone("tree", ZoneKind::Mask, &[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]);
        let m = ZoneMap::build(std::slice::from_ref(&mask), w, h);
        assert_eq!(m.considered_px, 50);
        assert_eq!(m.considered[0], 0);
        assert_eq!(m.considered[9], 1);
        // An include zone limits to its pixels, and a mask wins inside it.
        let inc = zone("yard", ZoneKind::Include, &[(0.0, 0.0), (1.0, 0.0), (1.0, 0.3), (0.0, 0.3)]);
        let m = ZoneMap::build(&[inc.clone(), mask], w, h);
        assert_eq!(m.considered_px, 15);
        assert_eq!(m.includes.len(), 1);
        assert_eq!(m.includes[0].0, 0);
        let covered: u32 = m.includes[0].1.iter().map(|(a, b)| b - a).sum();
        assert_eq!(covered, 30, "the zone's own span keeps masked pixels; the map drops them");
    }

    #[test]
    fn validation_names_the_zone() {
        let ok = zone("door", ZoneKind::Include, &[(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)]);
        assert_eq!(validate_zones(std::slice::from_ref(&ok)), Ok(()));
        assert_eq!(validate_zones(&[]), Ok(()));

        let msg = |zones: &[Zone]| validate_zones(zones).unwrap_err().to_string();

        let few = zone("gate", ZoneKind::Mask, &[(0.0, 0.0), (1.0, 0.0)]);
        assert_eq!(msg(&[ok.clone(), few]), "zone #2 `gate`: a polygon needs at least 3 points, it has 2");

        let out = zone("road", ZoneKind::Include, &[(0.0, 0.0), (1.2, 0.5), (0.0, 1.0)]);
        assert_eq!(msg(&[out]), "zone #1 `road`: point 2 (1.2, 0.5) lies outside 0..=1");

        let neg = zone("road", ZoneKind::Include, &[(0.0, 0.0), (0.5, -0.1), (0.0, 1.0)]);
        assert!(msg(&[neg]).contains("point 2 (0.5, -0.1) lies outside"));

        let nan = zone("pool", ZoneKind::Include, &[(0.0, 0.0), (f32::NAN, 0.5), (0.0, 1.0)]);
        assert_eq!(msg(&[nan]), "zone #1 `pool`: point 2 (NaN, 0.5) is not a finite number");

        let inf = zone("pool", ZoneKind::Include, &[(0.0, 0.0), (0.5, f32::INFINITY), (0.0, 1.0)]);
        assert!(msg(&[inf]).contains("not a finite number"));

        let line = zone("fence", ZoneKind::Mask, &[(0.0, 0.0), (0.5, 0.5), (1.0, 1.0)]);
        assert_eq!(msg(&[line]), "zone #1 `fence`: it encloses no area (its points lie on one line)");

        let dup = ok.clone();
        assert_eq!(msg(&[ok.clone(), dup]), "zone #2 `door`: the name is also used by zone #1");

        let unnamed = zone("  ", ZoneKind::Include, &[(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)]);
        assert_eq!(msg(&[unnamed]), "zone #1: the name is empty");

        let long = zone(&"x".repeat(65), ZoneKind::Include, &[(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)]);
        assert!(msg(&[long]).ends_with("the name is longer than 64 characters"));

        let ctl = zone("a\nb", ZoneKind::Include, &[(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)]);
        assert_eq!(msg(&[ctl]), "zone #1 `a\\nb`: the name contains a control character");

        let many = zone("big", ZoneKind::Include, &vec![(0.5, 0.5); 257]);
        assert!(msg(&[many]).contains("257 points, at most 256"));

        let lots: Vec<Zone> =
            (0..65).map(|i| zone(&format!("z{i}"), ZoneKind::Mask, &[(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)])).collect();
        assert_eq!(msg(&lots), "at most 64 zones per camera, got 65");
        assert_eq!(validate_zones(&lots[..64]), Ok(()));

        let e: crate::Error = validate_zones(&[zone("q", ZoneKind::Mask, &[])]).unwrap_err().into();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
    }

    #[test]
    fn json_shape() {
        let z = zone("drive way", ZoneKind::Include, &[(0.0, 0.5), (1.0, 0.5), (0.5, 1.0)]);
        let json = serde_json::to_string(&z).unwrap();
        assert_eq!(json, r#"{"name":"drive way","kind":"include","points":[[0.0,0.5],[1.0,0.5],[0.5,1.0]]}"#);
        assert_eq!(serde_json::from_str::<Zone>(&json).unwrap(), z);
        let mask: Zone = serde_json::from_str(r#"{"name":"m","kind":"mask","points":[[0,0],[1,0],[1,1]]}"#).unwrap();
        assert_eq!(mask.kind, ZoneKind::Mask);
        assert!(serde_json::from_str::<Zone>(r#"{"name":"m","kind":"other","points":[]}"#).is_err());
        assert!(serde_json::from_str::<Zone>(r#"{"name":"m","kind":"mask","points":[],"x":1}"#).is_err());
    }

    #[test]
    fn zone_set() {
        let mut s = ZoneSet::EMPTY;
        assert!(s.is_empty());
        s.insert(3);
        s.insert(0);
        s.insert(63);
        s.insert(64); // ignored
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 63]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(63) && !s.contains(64) && !s.contains(1));
        let mut t = ZoneSet::default();
        t.insert(1);
        assert_eq!(s.union(t).len(), 4);
    }
}
