//! Detector tests on synthetic 320x180 scenes: a textured still background, sensor
//! noise, a ticking clock, light changes, and a moving rectangle.

use super::*;

const W: u32 = 320;
const H: u32 = 180;
/// 5 fps.
const DT: i64 = 200;

/// splitmix64: small, deterministic, good enough for test scenes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    /// Roughly N(0, 1): a sum of four uniforms (bounded at ±3.5).
    fn gauss(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 3f32.sqrt()
    }
}

#[derive(Clone, Copy)]
enum Noise {
    None,
    Gauss(f32),
    Uniform(f32),
}

#[derive(Clone, Copy)]
struct Rect {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
    value: u8,
}

const NOISE_LEN: usize = 1 << 18;

/// A synthetic camera picture, rendered frame by frame.
struct Scene {
    w: usize,
    h: usize,
    texture: Vec<f32>,
    /// value = texture * gain + offset
    gain: f32,
    offset: f32,
    /// Unit noise samples; each frame reads them from a random start.
    noise_table: Vec<f32>,
    noise: Noise,
    /// A 40x8 block in the bottom-right corner whose content changes every 5 frames.
    clock: bool,
    clock_pixels: Vec<u8>,
    rect: Option<Rect>,
    rng: Rng,
    frame_no: u64,
}

impl Scene {
    /// Texture between `lo` and `hi`: smooth waves plus fine grain.
    fn new(w: u32, h: u32, lo: f32, hi: f32, seed: u64) -> Scene {
        let (w, h) = (w as usize, h as usize);
        let mut rng = Rng(seed);
        let texture = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let wave = ((x * 0.21 + (y * 0.13).sin() * 2.0).sin() * (y * 0.17).cos() + 1.0) / 2.0;
                let grain = rng.unit();
                lo + (hi - lo) * (0.8 * wave + 0.2 * grain)
            })
            .collect();
        let mut noise_rng = Rng(seed ^ 0xdead_beef);
        let noise_table = (0..NOISE_LEN).map(|_| noise_rng.gauss()).collect();
        Scene {
            w,
            h,
            texture,
            gain: 1.0,
            offset: 0.0,
            noise_table,
            noise: Noise::Gauss(4.0),
            clock: true,
            clock_pixels: vec![0; 40 * 8],
            rect: None,
            rng,
            frame_no: 0,
        }
    }

    fn render(&mut self, out: &mut Vec<u8>) {
        if self.frame_no.is_multiple_of(5) {
            for p in &mut self.clock_pixels {
                *p = self.rng.below(256) as u8;
            }
        }
        self.frame_no += 1;
        out.clear();
        out.reserve(self.w * self.h);
        let start = self.rng.below(NOISE_LEN as u64) as usize;
        let (cx, cy) = (self.w.saturating_sub(44), self.h.saturating_sub(10));
        for i in 0..self.w * self.h {
            let (x, y) = (i % self.w, i / self.w);
            let mut v = self.texture[i] * self.gain + self.offset;
            if let Some(r) = self.rect {
                let (xi, yi) = (x as i32, y as i32);
                if xi >= r.x && xi < r.x + r.w && yi >= r.y && yi < r.y + r.h {
                    v = f32::from(r.value);
                }
            }
            if self.clock && x >= cx && x < cx + 40 && y >= cy && y < cy + 8 {
                v = f32::from(self.clock_pixels[(y - cy) * 40 + (x - cx)]);
            }
            v += match self.noise {
                Noise::None => 0.0,
                Noise::Gauss(sigma) => sigma * self.noise_table[(start + i) % NOISE_LEN],
                Noise::Uniform(amp) => amp * (2.0 * self.rng.unit() - 1.0),
            };
            out.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
}

/// A scene, a detector, a clock and a log of what happened.
struct Sim {
    det: Detector,
    scene: Scene,
    t: i64,
    dt: i64,
    frame: Vec<u8>,
    /// (frame index, timestamp, observation)
    log: Vec<(usize, i64, Observation)>,
}

impl Sim {
    fn new(cfg: DetectorConfig, scene: Scene) -> Sim {
        Sim { det: Detector::new(cfg), scene, t: 1_000_000, dt: DT, frame: Vec::new(), log: Vec::new() }
    }

    /// Renders and feeds one frame; returns its index.
    fn step(&mut self) -> usize {
        self.scene.render(&mut self.frame);
        let obs = self.det.feed(&self.frame, self.scene.w as u32, self.scene.h as u32, self.t);
        let i = self.log.len();
        self.log.push((i, self.t, obs));
        self.t += self.dt;
        i
    }

    fn steps(&mut self, n: usize) {
        for _ in 0..n {
            self.step();
        }
    }

    fn transitions(&self) -> Vec<(usize, &Transition)> {
        self.log.iter().filter_map(|(i, _, o)| o.transition.as_ref().map(|t| (*i, t))).collect()
    }

    fn started(&self) -> Vec<(usize, i64, Vec<String>)> {
        self.transitions()
            .into_iter()
            .filter_map(|(i, t)| match t {
                Transition::Started { at_ms, zones_hit } => Some((i, *at_ms, zones_hit.clone())),
                _ => None,
            })
            .collect()
    }

    fn ended(&self) -> Vec<(usize, i64, f32, Vec<String>)> {
        self.transitions()
            .into_iter()
            .filter_map(|(i, t)| match t {
                Transition::Ended { at_ms, peak_score, zones_hit, .. } => Some((i, *at_ms, *peak_score, zones_hit.clone())),
                _ => None,
            })
            .collect()
    }

    fn ts(&self, i: usize) -> i64 {
        self.log[i].1
    }

    fn max_score(&self) -> f32 {
        self.log.iter().map(|(_, _, o)| o.score).fold(0.0, f32::max)
    }
}

fn cfg(sensitivity: u8) -> DetectorConfig {
    DetectorConfig { sensitivity, ..DetectorConfig::default() }
}

fn rect_zone(name: &str, kind: ZoneKind, x0: f32, y0: f32, x1: f32, y1: f32) -> Zone {
    Zone { name: name.into(), kind, points: vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1)] }
}

/// 64x48 (5.3 % of the frame) rectangle moving right 6 px per frame along y = 66..114.
const RECT_PATH_Y: i32 = 66;

/// Still for `still` frames, the rectangle moving for `moving` frames, then gone for
/// `after` frames. Returns (first moving frame, last moving frame).
fn run_moving_rect(sim: &mut Sim, value: u8, still: usize, moving: usize, after: usize) -> (usize, usize) {
    sim.steps(still);
    let mut first = None;
    let mut last = 0;
    for k in 0..moving {
        sim.scene.rect = Some(Rect { x: 20 + 6 * k as i32, y: RECT_PATH_Y, w: 64, h: 48, value });
        last = sim.step();
        first.get_or_insert(last);
    }
    sim.scene.rect = None;
    sim.steps(after);
    (first.unwrap(), last)
}

#[test]
fn detector_can_move_to_a_camera_thread() {
    fn send<T: Send + 'static>() {}
    send::<Detector>();
    send::<Observation>();
}

#[test]
fn quiet_scene_never_triggers_at_any_sensitivity() {
    // A dark scene (dawn) with noise σ = 4 and a clock, brightening +1 grey level per
    // frame for 200 frames, then steady; one scene, a detector per sensitivity. (Lower
    // sensitivities only raise both thresholds; three keep the debug-mode test short.)
    let sensitivities = [1u8, 5, 10];
    let mut scene = Scene::new(W, H, 10.0, 50.0, 1);
    let mut dets: Vec<Detector> = sensitivities.iter().map(|&s| Detector::new(cfg(s))).collect();
    let mut max = [0f32; 3];
    let mut frame = Vec::new();
    for n in 0..320 {
        if (10..210).contains(&n) {
            scene.offset += 1.0;
        }
        scene.render(&mut frame);
        for (k, d) in dets.iter_mut().enumerate() {
            let o = d.feed(&frame, W, H, n * DT);
            let s = sensitivities[k];
            assert!(o.transition.is_none(), "sensitivity {s}: {o:?} at frame {n}");
            assert!(!o.over_threshold, "sensitivity {s}: over threshold at frame {n}: {o:?}");
            assert_eq!(o.warming_up, n < i64::from(WARMUP_FRAMES));
            max[k] = max[k].max(o.score);
        }
    }
    // The clock alone is at most 320 of 57600 pixels.
    for (k, m) in max.iter().enumerate() {
        assert!(*m < 0.006, "sensitivity {}: max score {m}", sensitivities[k]);
    }
}

#[test]
fn uniform_noise_of_8_never_marks_a_pixel() {
    let mut scene = Scene::new(W, H, 40.0, 200.0, 2);
    scene.noise = Noise::Uniform(8.0);
    scene.clock = false;
    let mut sim = Sim::new(cfg(10), scene);
    sim.steps(150);
    assert_eq!(sim.max_score(), 0.0);
}

#[test]
fn heavy_gaussian_noise_at_default_sensitivity() {
    let mut scene = Scene::new(W, H, 40.0, 200.0, 3);
    scene.noise = Noise::Gauss(8.0);
    let mut sim = Sim::new(DetectorConfig::default(), scene);
    sim.steps(200);
    assert!(sim.transitions().is_empty());
    assert!(sim.log.iter().all(|(_, _, o)| !o.over_threshold));
    assert!(sim.max_score() < 0.006, "{}", sim.max_score());
}

#[test]
fn exposure_and_gain_changes_do_not_trigger() {
    let mut scene = Scene::new(W, H, 30.0, 200.0, 4);
    let mut sim = Sim::new(DetectorConfig::default(), scene_take(&mut scene));
    sim.steps(20);
    // Gain +0.5 % per frame to 1.25 (bright pixels gain 1 grey level a frame).
    for _ in 0..50 {
        sim.scene.gain += 0.005;
        sim.step();
    }
    sim.steps(10);
    // An auto-exposure step: −25 at once.
    sim.scene.offset -= 25.0;
    sim.steps(10);
    // A fast gain drop back to 1.0 over 10 frames.
    for _ in 0..10 {
        sim.scene.gain -= 0.025;
        sim.step();
    }
    sim.steps(20);
    assert!(sim.transitions().is_empty(), "{:?}", sim.transitions());
    assert!(sim.log.iter().all(|(_, _, o)| !o.over_threshold), "max score {}", sim.max_score());
}

/// Moves a scene out of a `&mut` (the helper keeps the test bodies short).
fn scene_take(scene: &mut Scene) -> Scene {
    std::mem::replace(scene, Scene::new(1, 1, 0.0, 0.0, 0))
}

#[test]
fn moving_rectangle_makes_exactly_one_event() {
    for (value, dt) in [(235u8, DT), (5, DT), (235, 67), (235, 1000)] {
        let mut sim = Sim::new(DetectorConfig::default(), Scene::new(W, H, 40.0, 200.0, 5));
        sim.dt = dt;
        let (first, last) = run_moving_rect(&mut sim, value, 30, 30, 40);
        let started = sim.started();
        let ended = sim.ended();
        let what = format!("value {value}, dt {dt}: {:?}", sim.transitions());
        assert_eq!(started.len(), 1, "{what}");
        assert_eq!(ended.len(), 1, "{what}");
        // Started on the third moving frame, dated at the first.
        assert_eq!(started[0].0, first + 2, "{what}");
        assert_eq!(started[0].1, sim.ts(first), "{what}");
        assert!(started[0].2.is_empty());
        // Ended three still frames after the last moving one, dated at that one.
        // At 1 fps the same 6 px per frame is a slow object (each pixel covered for
        // 10 s): it leaves a fading trail in the background for a few seconds.
        if dt == 1000 {
            assert!(ended[0].1 >= sim.ts(last) && ended[0].1 <= sim.ts(last) + 15_000, "{what}");
            continue;
        }
        assert_eq!(ended[0].0, last + 3, "{what}");
        assert_eq!(ended[0].1, sim.ts(last), "{what}");
        assert!(ended[0].2 > 0.04, "peak {} ({what})", ended[0].2);
        // `moving` is true exactly from Started to the frame before Ended.
        for (i, _, o) in &sim.log {
            assert_eq!(o.moving, (first + 2..last + 3).contains(i), "frame {i} ({what})");
        }
        // The peak frame was flagged.
        let peak_frames: Vec<_> = sim.log.iter().filter(|(_, _, o)| o.new_peak).collect();
        assert!(!peak_frames.is_empty());
        let Some(Transition::Ended { peak_at_ms, peak_score, .. }) = &sim.log[last + 3].2.transition else { unreachable!() };
        let last_peak = peak_frames.last().unwrap();
        assert_eq!((last_peak.1, last_peak.2.score), (*peak_at_ms, *peak_score));
    }
}

#[test]
fn short_blip_does_not_start_an_event() {
    let mut sim = Sim::new(DetectorConfig::default(), Scene::new(W, H, 40.0, 200.0, 6));
    sim.steps(30);
    sim.scene.rect = Some(Rect { x: 100, y: 60, w: 64, h: 48, value: 250 });
    sim.steps(2);
    sim.scene.rect = None;
    sim.steps(20);
    assert!(sim.log[30].2.over_threshold && sim.log[31].2.over_threshold);
    assert!(sim.transitions().is_empty(), "{:?}", sim.transitions());
}

#[test]
fn object_that_stays_is_absorbed_and_ends_once() {
    let mut sim = Sim::new(DetectorConfig::default(), Scene::new(W, H, 40.0, 200.0, 7));
    sim.steps(30);
    for k in 0..20 {
        sim.scene.rect = Some(Rect { x: 20 + 6 * k, y: 60, w: 64, h: 48, value: 235 });
        sim.step();
    }
    // It parks and stays for two minutes.
    sim.steps(600);
    let (started, ended) = (sim.started(), sim.ended());
    assert_eq!(started.len(), 1, "{:?}", sim.transitions());
    assert_eq!(ended.len(), 1, "{:?}", sim.transitions());
    let secs = (ended[0].0 - 50) as f64 * DT as f64 / 1000.0;
    assert!(secs < 60.0, "absorbed after {secs} s");
    eprintln!("a parked object is absorbed after {secs:.1} s");
}

#[test]
fn mask_over_the_path_hides_the_movement() {
    let mask = rect_zone("street", ZoneKind::Mask, 0.0, 0.3, 1.0, 0.7);
    let c = DetectorConfig { zones: vec![mask], ..DetectorConfig::default() };
    let mut sim = Sim::new(c, Scene::new(W, H, 40.0, 200.0, 8));
    run_moving_rect(&mut sim, 235, 30, 30, 20);
    assert!(sim.transitions().is_empty(), "{:?}", sim.transitions());
    assert!(sim.log.iter().all(|(_, _, o)| !o.over_threshold));
    assert!(sim.max_score() < 0.01, "only the clock is left: {}", sim.max_score());
}

#[test]
fn include_zone_elsewhere_sees_nothing() {
    let sky = rect_zone("porch", ZoneKind::Include, 0.0, 0.0, 1.0, 0.3);
    let c = DetectorConfig { zones: vec![sky], ..DetectorConfig::default() };
    let mut sim = Sim::new(c, Scene::new(W, H, 40.0, 200.0, 9));
    run_moving_rect(&mut sim, 235, 30, 30, 20);
    assert!(sim.transitions().is_empty(), "{:?}", sim.transitions());
    assert!(sim.log.iter().all(|(_, _, o)| o.zones_hit.is_empty()));
}

#[test]
fn include_zone_on_the_path_reports_its_name() {
    // Zone 0 on the right part of the path, zone 1 elsewhere, a mask over the clock.
    let zones = vec![
        Zone { name: "drive".into(), kind: ZoneKind::Include, points: vec![(0.5, 0.2), (1.0, 0.2), (1.0, 0.8), (0.6, 0.8)] },
        rect_zone("porch", ZoneKind::Include, 0.0, 0.0, 0.4, 0.2),
        rect_zone("clock", ZoneKind::Mask, 0.8, 0.9, 1.0, 1.0),
    ];
    let c = DetectorConfig { zones, ..DetectorConfig::default() };
    let mut sim = Sim::new(c, Scene::new(W, H, 40.0, 200.0, 10));
    let (_, last) = run_moving_rect(&mut sim, 235, 30, 30, 20);
    let (started, ended) = (sim.started(), sim.ended());
    assert_eq!(started.len(), 1, "{:?}", sim.transitions());
    assert_eq!(ended.len(), 1, "{:?}", sim.transitions());
    assert_eq!(started[0].2, vec!["drive".to_string()]);
    assert_eq!(ended[0].3, vec!["drive".to_string()]);
    assert_eq!(ended[0].1, sim.ts(last));
    // Per frame: only zone 0, and only on over-threshold frames.
    for (_, _, o) in &sim.log {
        assert!(!o.zones_hit.contains(1));
        if o.zones_hit.contains(0) {
            assert!(o.over_threshold);
            assert_eq!(sim.det.zone_names(o.zones_hit).collect::<Vec<_>>(), vec!["drive"]);
        }
    }
    // The event starts only once the rectangle reaches the zone: its left edge is at
    // about 169 px on the path, which the rectangle's right edge (84 + 6k px) passes at
    // its 15th frame.
    let start_frame = started[0].0;
    assert!(start_frame >= 30 + 14, "started at frame {start_frame}");
}

#[test]
fn resolution_change_resets_and_ends_a_running_event() {
    let mut sim = Sim::new(DetectorConfig::default(), Scene::new(W, H, 40.0, 200.0, 11));
    sim.steps(30);
    for k in 0..6 {
        sim.scene.rect = Some(Rect { x: 20 + 6 * k, y: 60, w: 64, h: 48, value: 235 });
        sim.step();
    }
    assert!(sim.det.is_moving());
    let last_motion = sim.log.last().unwrap().1;

    // The stream comes back at 160x90.
    let mut small = Scene::new(160, 90, 40.0, 200.0, 12);
    small.clock = false;
    small.noise = Noise::None;
    let mut frame = Vec::new();
    small.render(&mut frame);
    let o = sim.det.feed(&frame, 160, 90, sim.t);
    assert!(o.warming_up && !o.moving);
    match o.transition {
        Some(Transition::Ended { at_ms, .. }) => assert_eq!(at_ms, last_motion),
        other => panic!("expected Ended, got {other:?}"),
    }
    for n in 1..40 {
        small.render(&mut frame);
        let o = sim.det.feed(&frame, 160, 90, sim.t + n * DT);
        assert_eq!(o.warming_up, n < i64::from(WARMUP_FRAMES), "frame {n}");
        assert!(o.transition.is_none() && !o.over_threshold, "frame {n}: {o:?}");
    }
    // And back to 320x180: warm-up again, no event (no detector state carried over).
    sim.scene.rect = None;
    let from = sim.log.len();
    sim.steps(30);
    assert!(sim.log[from].2.warming_up);
    assert!(sim.log[from..].iter().all(|(_, _, o)| o.transition.is_none()));
}

#[test]
fn reset_forgets_background_and_ends_event() {
    let mut sim = Sim::new(DetectorConfig::default(), Scene::new(W, H, 40.0, 200.0, 13));
    sim.steps(30);
    assert_eq!(sim.det.reset(), None);
    let i = sim.step();
    assert!(sim.log[i].2.warming_up);
    sim.steps(20);
    for k in 0..5 {
        sim.scene.rect = Some(Rect { x: 20 + 6 * k, y: 60, w: 64, h: 48, value: 235 });
        sim.step();
    }
    assert!(matches!(sim.det.reset(), Some(Transition::Ended { .. })));
    assert!(!sim.det.is_moving());
}

#[test]
fn reconfigure_keeps_the_background() {
    let mut sim = Sim::new(DetectorConfig::default(), Scene::new(W, H, 40.0, 200.0, 14));
    sim.steps(20);
    sim.det.reconfigure(DetectorConfig {
        sensitivity: 9,
        zones: vec![rect_zone("left", ZoneKind::Include, 0.0, 0.0, 0.5, 1.0)],
        ..DetectorConfig::default()
    });
    assert_eq!(sim.det.thresholds(), thresholds(9));
    let i = sim.step();
    assert!(!sim.log[i].2.warming_up);
    sim.steps(10);
    assert!(sim.transitions().is_empty());
    // Clamping: out-of-range numbers are brought into range, not rejected.
    sim.det.reconfigure(DetectorConfig { sensitivity: 0, start_frames: 0, end_frames: 1000, zones: vec![] });
    assert_eq!(sim.det.config().sensitivity, 1);
    assert_eq!(sim.det.config().start_frames, 1);
    assert_eq!(sim.det.config().end_frames, MAX_PERSISTENCE_FRAMES);
}

#[test]
fn zones_hit_survive_a_reconfigure_during_an_event() {
    let zones = vec![rect_zone("all", ZoneKind::Include, 0.0, 0.0, 1.0, 1.0)];
    let c = DetectorConfig { zones, ..DetectorConfig::default() };
    let mut sim = Sim::new(c, Scene::new(W, H, 40.0, 200.0, 15));
    sim.steps(30);
    for k in 0..6 {
        sim.scene.rect = Some(Rect { x: 20 + 6 * k, y: 60, w: 64, h: 48, value: 235 });
        sim.step();
    }
    sim.det.reconfigure(DetectorConfig {
        zones: vec![rect_zone("whole", ZoneKind::Include, 0.0, 0.0, 1.0, 1.0)],
        ..DetectorConfig::default()
    });
    for k in 6..12 {
        sim.scene.rect = Some(Rect { x: 20 + 6 * k, y: 60, w: 64, h: 48, value: 235 });
        sim.step();
    }
    sim.scene.rect = None;
    sim.steps(10);
    let ended = sim.ended();
    assert_eq!(ended.len(), 1, "{:?}", sim.transitions());
    assert_eq!(ended[0].3, vec!["all".to_string(), "whole".to_string()]);
}

#[test]
fn strided_frames_match_packed_ones() {
    let mut scene = Scene::new(W, H, 40.0, 200.0, 16);
    let (mut a, mut b) = (Detector::new(cfg(5)), Detector::new(cfg(5)));
    let mut frame = Vec::new();
    let stride = W as usize + 4;
    for n in 0..60i64 {
        if (30..45).contains(&n) {
            scene.rect = Some(Rect { x: 20 + 6 * n as i32, y: 60, w: 64, h: 48, value: 235 });
        } else {
            scene.rect = None;
        }
        scene.render(&mut frame);
        let mut padded = vec![0xAAu8; stride * H as usize];
        for y in 0..H as usize {
            padded[y * stride..y * stride + W as usize].copy_from_slice(&frame[y * W as usize..(y + 1) * W as usize]);
        }
        let oa = a.feed(&frame, W, H, n * DT);
        let ob = b.feed_strided(&padded[..stride * (H as usize - 1) + W as usize], W, H, stride as u32, n * DT);
        assert_eq!(oa, ob, "frame {n}");
    }
}

#[test]
fn garbage_frames_are_rejected_without_panicking() {
    let mut sim = Sim::new(DetectorConfig::default(), Scene::new(W, H, 40.0, 200.0, 17));
    sim.steps(30);
    for k in 0..5 {
        sim.scene.rect = Some(Rect { x: 20 + 6 * k, y: 60, w: 64, h: 48, value: 235 });
        sim.step();
    }
    assert!(sim.det.is_moving());
    let short = vec![0u8; (W * H - 1) as usize];
    let big = vec![0u8; 1000];
    let cases: [(&[u8], u32, u32, u32); 7] = [
        (&short, W, H, W),
        (&[], W, H, W),
        (&big, 0, 10, 0),
        (&big, 10, 0, 10),
        (&big, 10, 10, 5),
        (&big, u32::MAX, u32::MAX, u32::MAX),
        (&big, 4097, 4097, 4097),
    ];
    for (data, w, h, stride) in cases {
        let o = sim.det.feed_strided(data, w, h, stride, sim.t);
        assert!(o.rejected, "{w}x{h}/{stride} len {}", data.len());
        assert_eq!((o.score, o.over_threshold, o.transition.clone()), (0.0, false, None));
        assert!(o.moving, "a bad frame does not end the event");
    }
    // The model was not reset: the next good frames carry on.
    let i = sim.step();
    assert!(!sim.log[i].2.warming_up);
}

#[test]
fn fuzz_random_bytes_sizes_timestamps_and_zones() {
    let mut rng = Rng(0x5eed);
    let mut det = Detector::new(DetectorConfig::default());
    let mut active = false;
    let mut data = Vec::new();
    for round in 0..20_000u32 {
        if rng.below(500) == 0 {
            // Random, often invalid zones (the detector sanitises them).
            let n = rng.below(4) as usize;
            let zones = (0..n)
                .map(|i| Zone {
                    name: format!("z{i}"),
                    kind: if rng.below(2) == 0 { ZoneKind::Include } else { ZoneKind::Mask },
                    points: (0..rng.below(7))
                        .map(|_| {
                            let mut c = || match rng.below(10) {
                                0 => f32::NAN,
                                1 => f32::INFINITY,
                                2 => -3.0,
                                _ => rng.unit() * 1.2 - 0.1,
                            };
                            (c(), c())
                        })
                        .collect(),
                })
                .collect();
            det.reconfigure(DetectorConfig {
                sensitivity: rng.below(14) as u8,
                zones,
                start_frames: rng.below(5) as u32,
                end_frames: rng.below(5) as u32,
            });
        }
        // Mostly a few sizes, so the model gets past warm-up; sometimes anything.
        let (w, h) = match rng.below(10) {
            0 => (rng.below(70) as u32, rng.below(70) as u32),
            1 => (rng.next() as u32, rng.next() as u32),
            2..=5 => (16, 9),
            _ => (32, 18),
        };
        let stride = if rng.below(8) == 0 { w.saturating_add(rng.below(5) as u32) } else { w };
        let want = (stride as usize).saturating_mul(h as usize).min(1 << 16);
        let len = match rng.below(6) {
            0 => rng.below(want as u64 + 8) as usize,
            _ => want,
        };
        data.clear();
        data.extend((0..len).map(|_| rng.next() as u8));
        let ts = match rng.below(20) {
            0 => rng.next() as i64,
            1 => i64::MIN,
            2 => i64::MAX,
            _ => i64::from(round) * 200,
        };
        let o = det.feed_strided(&data, w, h, stride, ts);
        assert!((0.0..=1.0).contains(&o.score), "score {} in round {round}", o.score);
        match &o.transition {
            Some(Transition::Started { .. }) => {
                assert!(!active, "Started twice in round {round}");
                active = true;
            }
            Some(Transition::Ended { peak_score, .. }) => {
                assert!(active, "Ended without Started in round {round}");
                assert!((0.0..=1.0).contains(peak_score));
                active = false;
            }
            None => {}
        }
        assert_eq!(o.moving, active, "round {round}");
        if rng.below(3000) == 0 {
            if det.reset().is_some() {
                assert!(active);
            }
            active = false;
        }
    }
}

/// `cargo test --release --lib motion::tests::timing -- --ignored --nocapture`
#[test]
#[ignore]
fn timing() {
    use std::time::Instant;
    for zones in [
        vec![],
        vec![
            rect_zone("drive", ZoneKind::Include, 0.0, 0.2, 1.0, 0.8),
            rect_zone("porch", ZoneKind::Include, 0.0, 0.0, 0.4, 0.2),
            rect_zone("clock", ZoneKind::Mask, 0.8, 0.9, 1.0, 1.0),
        ],
    ] {
        let n_zones = zones.len();
        let mut scene = Scene::new(W, H, 40.0, 200.0, 99);
        let frames: Vec<Vec<u8>> = (0..200)
            .map(|n| {
                scene.rect = (n % 50 > 20).then_some(Rect { x: 4 * (n % 50), y: 60, w: 64, h: 48, value: 235 });
                let mut f = Vec::new();
                scene.render(&mut f);
                f
            })
            .collect();
        let mut det = Detector::new(DetectorConfig { zones, ..DetectorConfig::default() });
        // The best of 25 rounds of 200 frames: the machine may be busy with other work.
        let mut best = std::time::Duration::MAX;
        let mut events = 0;
        for r in 0..25i64 {
            let start = Instant::now();
            for (n, f) in frames.iter().enumerate() {
                let o = det.feed(f, W, H, (r * 200 + n as i64) * DT);
                events += usize::from(matches!(o.transition, Some(Transition::Started { .. })));
            }
            best = best.min(start.elapsed() / frames.len() as u32);
        }
        eprintln!("320x180, {n_zones} zones: {best:?} per frame ({events} events)");
    }
}
