//! What the simulated camera shows, and the GStreamer launch line that draws and encodes it.
//!
//! The scene is a still SMPTE 75 % colour-bar pattern (no noise patch) with a small clock in the bottom-right corner. During
//! a motion span a large checkered box (a third of the width, half of the height: about 17 % of
//! the frame) is shown and slides back and forth across it. The box's position is a pure
//! function of the seconds since camsim started, so `/main` and `/sub` move in step.

use super::settings::StreamSpec;

/// Name of the compositor in the launch line, and of its pad that carries the moving box.
pub const MIXER_NAME: &str = "mix";
pub const BOX_PAD: &str = "sink_1";

/// Seconds for the box to go from the left edge to the right edge (and the same back).
const X_HALF_PERIOD: f64 = 1.0;
/// Seconds for the box to go from top to bottom (and the same back).
const Y_HALF_PERIOD: f64 = 1.7;

/// Where and how large the moving box is, in pixels of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxGeometry {
    pub frame_width: u32,
    pub frame_height: u32,
    pub width: u32,
    pub height: u32,
    /// Size of the checkerboard source before the compositor scales it up to `width`x`height`.
    pub source_width: u32,
    pub source_height: u32,
}

impl BoxGeometry {
    pub fn for_stream(s: &StreamSpec) -> BoxGeometry {
        let even = |v: u32| (v / 2 * 2).max(2);
        let width = even(s.width / 3);
        let height = even(s.height / 2);
        // videotestsrc checkers-8 draws 8-pixel squares; scaling a source 1/8 the size gives
        // squares about 64 pixels wide, which survive the hub's downscaling.
        let source_width = even(width / 8).max(16);
        let source_height = even(height / 8).max(16);
        BoxGeometry { frame_width: s.width, frame_height: s.height, width, height, source_width, source_height }
    }

    /// Top-left corner of the box at `t` seconds since start.
    pub fn position_at(&self, t: f64) -> (i32, i32) {
        let free_x = self.frame_width.saturating_sub(self.width) as f64;
        let free_y = self.frame_height.saturating_sub(self.height) as f64;
        let x = triangle(t / (2.0 * X_HALF_PERIOD)) * free_x;
        let y = triangle(t / (2.0 * Y_HALF_PERIOD)) * free_y;
        (x.round() as i32, y.round() as i32)
    }
}

/// 0 → 1 → 0 over each unit of `p` (a triangle wave).
fn triangle(p: f64) -> f64 {
    let f = p.rem_euclid(1.0);
    1.0 - (2.0 * f - 1.0).abs()
}

/// The launch line for one RTSP mount (`gst_rtsp_media_factory_set_launch`).
///
/// The box pad starts invisible (alpha 0, which makes the compositor skip it entirely); the
/// caller moves it and shows it from a timer.
pub fn launch_line(s: &StreamSpec) -> String {
    let g = BoxGeometry::for_stream(s);
    let (w, h, fps) = (s.width, s.height, s.fps);
    // Clock text about 1/45 of the frame height; auto-resize would scale it with the width.
    let font_px = (h / 45).max(9);
    format!(
        "( compositor name={mix} background=black \
             {pad}::alpha=0 {pad}::zorder=1 {pad}::width={bw} {pad}::height={bh} \
           ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
           ! clockoverlay halignment=right valignment=bottom auto-resize=false \
             shaded-background=true font-desc=\"Sans {font_px}px\" time-format=\"%H:%M:%S\" \
           ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
           ! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 \
             key-int-max={gop} bitrate={kbps} \
           ! rtph264pay name=pay0 pt=96 config-interval=1 \
         videotestsrc is-live=true pattern=smpte75 \
           ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
           ! {mix}.sink_0 \
         videotestsrc is-live=true pattern=checkers-8 \
           ! video/x-raw,format=I420,width={sw},height={sh},framerate={fps}/1 \
           ! {mix}.{pad} )",
        mix = MIXER_NAME,
        pad = BOX_PAD,
        bw = g.width,
        bh = g.height,
        sw = g.source_width,
        sh = g.source_height,
        gop = s.gop,
        kbps = s.bitrate_kbps,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(width: u32, height: u32) -> StreamSpec {
        StreamSpec { width, height, fps: 15, bitrate_kbps: 1000, gop: 30 }
    }

    #[test]
    fn box_is_large() {
        for (w, h) in [(1920, 1080), (640, 360), (16, 16), (1280, 720)] {
            let g = BoxGeometry::for_stream(&spec(w, h));
            let area = (g.width * g.height) as f64 / (w * h) as f64;
            assert!(area >= 0.10, "{w}x{h}: box covers only {area}");
            assert!(g.width <= w && g.height <= h);
            assert_eq!(g.width % 2, 0);
            assert_eq!(g.height % 2, 0);
        }
    }

    #[test]
    fn box_moves_across_and_stays_inside() {
        let g = BoxGeometry::for_stream(&spec(640, 360));
        assert_eq!(g.position_at(0.0), (0, 0));
        let (x, _) = g.position_at(X_HALF_PERIOD);
        assert_eq!(x as u32, 640 - g.width);
        let mut t = 0.0;
        while t < 20.0 {
            let (x, y) = g.position_at(t);
            assert!(x >= 0 && x as u32 + g.width <= 640);
            assert!(y >= 0 && y as u32 + g.height <= 360);
            t += 0.013;
        }
        // Moves a clear distance in a fifth of a second.
        let (a, _) = g.position_at(0.2);
        let (b, _) = g.position_at(0.4);
        assert!((b - a).abs() > 60);
    }

    #[test]
    fn same_relative_position_on_both_streams() {
        let main = BoxGeometry::for_stream(&spec(1920, 1080));
        let sub = BoxGeometry::for_stream(&spec(640, 360));
        for t in [0.3, 1.7, 4.25] {
            let (mx, _) = main.position_at(t);
            let (sx, _) = sub.position_at(t);
            let mf = mx as f64 / (1920 - main.width) as f64;
            let sf = sx as f64 / (640 - sub.width) as f64;
            assert!((mf - sf).abs() < 0.01);
        }
    }

    #[test]
    fn launch_line_has_the_encoder_settings() {
        let l = launch_line(&StreamSpec { width: 1920, height: 1080, fps: 30, bitrate_kbps: 4000, gop: 60 });
        assert!(l.contains("x264enc tune=zerolatency speed-preset=ultrafast"));
        assert!(l.contains("key-int-max=60 bitrate=4000"));
        assert!(l.contains("rtph264pay name=pay0 pt=96 config-interval=1"));
        assert!(l.contains("width=1920,height=1080,framerate=30/1"));
    }
}
