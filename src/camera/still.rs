//! Colour stills from a live feed: the camera's own H.264 access units decoded on demand
//! into one JPEG (the grid's posters, snapshots, event thumbnails). Never touches the
//! camera's pipeline: each still is a short pipeline of its own, bounded in time and
//! always torn down.
//!
//! Two stages: the units are decoded (hardware decoder where the hub has one) and only
//! the last decoded frame is kept; that one frame is scaled and encoded (hardware
//! `v4l2jpegenc` where present, `jpegenc` elsewhere). Encoding every decoded frame of a
//! GOP just to keep the last would cost a Pi dearly.

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::live::{Feed, Gop};
use crate::error::{Error, ErrorKind, Result};

/// The whole still, decode and encode, takes at most this long.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// Stills are never narrower than this (a poster on a phone's grid); thumbnails ask for more.
pub const MIN_WIDTH: u32 = 160;
pub const MAX_WIDTH: u32 = 1920;

/// The JPEG encoder this machine has: the Pi's hardware one when present.
pub fn jpeg_encoder() -> &'static str {
    if super::has_element("v4l2jpegenc") { "v4l2jpegenc" } else { "jpegenc" }
}

/// A JPEG of the latest keyframe of `feed`, `width` pixels wide (blocking).
/// `Unavailable` when the stream has not delivered a keyframe yet.
pub fn snapshot(feed: &Feed, width: u32, decoder: &str) -> Result<Vec<u8>> {
    let gop = feed.latest_gop().ok_or_else(|| Error::new(ErrorKind::Unavailable, "no frame from this camera yet"))?;
    jpeg_from_gop(&gop, 0, width, decoder)
}

/// Decodes `gop.units[0..=upto]` with `decoder` and encodes the last decoded frame as a
/// colour JPEG `width` pixels wide (clamped to 160..=1920; the height keeps the aspect).
/// Blocking, at most [`TIME_LIMIT`].
pub fn jpeg_from_gop(gop: &Gop, upto: usize, width: u32, decoder: &str) -> Result<Vec<u8>> {
    let deadline = Instant::now() + TIME_LIMIT;
    let p = &gop.params;
    if gop.units.is_empty() || !gop.units[0].key {
        return Err(Error::invalid("a still needs a group of pictures starting with a keyframe"));
    }
    if p.width == 0 || p.height == 0 || p.avcc.is_empty() {
        return Err(Error::invalid("stream parameters without a size or codec data"));
    }
    let last = upto.min(gop.units.len() - 1);
    let frame = decode_last(gop, last, decoder, deadline)?;
    let width = width.clamp(MIN_WIDTH, MAX_WIDTH);
    // Even dimensions: I420 and most JPEG encoders want them.
    let height = ((u64::from(width) * u64::from(p.height) / u64::from(p.width)) as u32).max(2) & !1;
    encode(&frame, width & !1, height, deadline)
}

/// Stops a pipeline whatever way the still ends.
struct Running(gst::Pipeline);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn fail(what: &str) -> impl Fn(&dyn std::fmt::Display) -> Error + '_ {
    move |e| Error::new(ErrorKind::Unavailable, format!("still: {what}: {e}"))
}

fn launch(desc: &str) -> Result<(Running, gst_app::AppSrc, gst_app::AppSink)> {
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| fail("building pipeline")(&e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| Error::internal("still: description did not give a pipeline"))?;
    let running = Running(pipeline);
    let src = running
        .0
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| Error::internal("still: no appsrc"))?;
    let out = running
        .0
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| Error::internal("still: no appsink"))?;
    Ok((running, src, out))
}

/// Pulls samples until end of stream (or the deadline); the last one.
fn last_sample(out: &gst_app::AppSink, bus: &gst::Bus, deadline: Instant) -> Result<Option<gst::Sample>> {
    let mut last = None;
    loop {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            return Err(Error::new(ErrorKind::Unavailable, format!("still: {}", e.error())));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::new(ErrorKind::Unavailable, format!("still: no picture within {} s", TIME_LIMIT.as_secs())));
        }
        // Short waits, so an error on the bus is seen soon.
        let wait = left.min(Duration::from_millis(100));
        match out.try_pull_sample(gst::ClockTime::from_nseconds(wait.as_nanos() as u64)) {
            Some(s) => last = Some(s),
            None if out.is_eos() => return Ok(last),
            None => {}
        }
    }
}

fn decode_last(gop: &Gop, last: usize, decoder: &str, deadline: Instant) -> Result<gst::Sample> {
    if !super::has_element(decoder) {
        return Err(Error::new(ErrorKind::Unavailable, format!("still: no element {decoder:?} on this machine")));
    }
    let (running, src, out) = launch(&format!(
        "appsrc name=src format=time is-live=false ! {decoder} ! appsink name=out sync=false max-buffers=1 drop=true enable-last-sample=false"
    ))?;
    let p = &gop.params;
    let mut caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(p.avcc.clone()))
        .field("width", p.width as i32)
        .field("height", p.height as i32);
    if p.fps > 0.0 {
        let fps = gst::Fraction::approximate_f64(p.fps).unwrap_or_else(|| gst::Fraction::new(30, 1));
        caps = caps.field("framerate", fps);
    }
    src.set_caps(Some(&caps.build()));
    running.0.set_state(gst::State::Playing).map_err(|e| fail("starting the decoder")(&e))?;
    let t0 = gop.units[0].dts_us.min(gop.units[0].pts_us);
    for u in &gop.units[..=last] {
        let mut buf = gst::Buffer::from_slice(u.data.clone());
        {
            let b = buf.get_mut().expect("new buffer");
            b.set_dts(gst::ClockTime::from_useconds((u.dts_us - t0).max(0) as u64));
            b.set_pts(gst::ClockTime::from_useconds((u.pts_us - t0).max(0) as u64));
            if !u.key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        src.push_buffer(buf).map_err(|e| fail("feeding the decoder")(&e))?;
    }
    let _ = src.end_of_stream();
    let bus = running.0.bus().ok_or_else(|| Error::internal("still: pipeline without a bus"))?;
    last_sample(&out, &bus, deadline)?.ok_or_else(|| Error::new(ErrorKind::Unavailable, "still: the decoder gave no picture"))
}

fn encode(frame: &gst::Sample, width: u32, height: u32, deadline: Instant) -> Result<Vec<u8>> {
    let caps = frame.caps().ok_or_else(|| Error::internal("still: decoded frame without caps"))?;
    let buf = frame.buffer_owned().ok_or_else(|| Error::internal("still: decoded frame without data"))?;
    let (running, src, out) = launch(&format!(
        "appsrc name=src format=time ! videoconvert ! videoscale ! video/x-raw,format=I420,width={width},height={height},pixel-aspect-ratio=1/1 \
         ! {enc} ! appsink name=out sync=false",
        enc = jpeg_encoder()
    ))?;
    // Only the picture matters; a still has no timeline.
    let mut caps = caps.to_owned();
    caps.make_mut().set("framerate", gst::Fraction::new(0, 1));
    src.set_caps(Some(&caps));
    let mut buf = buf;
    {
        let b = buf.make_mut();
        b.set_pts(gst::ClockTime::ZERO);
        b.set_dts(gst::ClockTime::NONE);
    }
    running.0.set_state(gst::State::Playing).map_err(|e| fail("starting the JPEG encoder")(&e))?;
    src.push_buffer(buf).map_err(|e| fail("feeding the JPEG encoder")(&e))?;
    let _ = src.end_of_stream();
    let bus = running.0.bus().ok_or_else(|| Error::internal("still: pipeline without a bus"))?;
    let sample = last_sample(&out, &bus, deadline)?
        .ok_or_else(|| Error::new(ErrorKind::Unavailable, "still: the encoder gave no JPEG"))?;
    let map = sample
        .buffer()
        .ok_or_else(|| Error::internal("still: empty JPEG"))?
        .map_readable()
        .map_err(|e| fail("reading the JPEG")(&e))?;
    Ok(map.as_slice().to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use gstreamer_video::prelude::*;

    use super::*;
    use crate::camera::live::{Params, Unit};

    /// A GOP from a real encoder: `frames` frames of the SMPTE colour bars, one keyframe.
    pub(crate) fn encoded_gop(width: u32, height: u32, frames: u32) -> Gop {
        crate::camera::init().unwrap();
        let (running, out) = gop_pipeline(width, height, frames);
        running.0.set_state(gst::State::Playing).unwrap();
        let mut units = Vec::new();
        let mut avcc = Bytes::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(s) = out.try_pull_sample(gst::ClockTime::from_seconds(5)) {
            if avcc.is_empty() {
                let st = s.caps().unwrap().structure(0).unwrap();
                let cd = st.get::<gst::Buffer>("codec_data").unwrap();
                avcc = Bytes::copy_from_slice(cd.map_readable().unwrap().as_slice());
            }
            let b = s.buffer().unwrap();
            units.push(Unit {
                data: Bytes::copy_from_slice(b.map_readable().unwrap().as_slice()),
                dts_us: b.dts().map_or(0, |t| t.useconds() as i64),
                pts_us: b.pts().map_or(0, |t| t.useconds() as i64),
                key: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                at_ms: 0,
            });
            assert!(Instant::now() < deadline);
        }
        assert_eq!(units.len(), frames as usize);
        Gop { params: Arc::new(Params { avcc, width, height, fps: 15.0 }), units }
    }

    fn gop_pipeline(width: u32, height: u32, frames: u32) -> (Running, gst_app::AppSink) {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers={frames} pattern=smpte75 ! video/x-raw,width={width},height={height},framerate=15/1 \
             ! x264enc key-int-max=300 tune=zerolatency speed-preset=ultrafast ! h264parse \
             ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let out = pipeline.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        (Running(pipeline), out)
    }

    /// Decodes a JPEG to I420 with GStreamer: (width, height, Y, U, V).
    pub(crate) fn decode_jpeg(jpeg: &[u8]) -> (u32, u32, Vec<u8>, Vec<u8>, Vec<u8>) {
        let (running, src, out) =
            launch("appsrc name=src ! jpegdec ! videoconvert ! video/x-raw,format=I420 ! appsink name=out sync=false").unwrap();
        src.set_caps(Some(&gst::Caps::builder("image/jpeg").field("framerate", gst::Fraction::new(0, 1)).build()));
        running.0.set_state(gst::State::Playing).unwrap();
        src.push_buffer(gst::Buffer::from_slice(jpeg.to_vec())).unwrap();
        let _ = src.end_of_stream();
        let s = out.try_pull_sample(gst::ClockTime::from_seconds(5)).expect("JPEG decodes");
        let info = gstreamer_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        let frame = gstreamer_video::VideoFrameRef::from_buffer_ref_readable(s.buffer().unwrap(), &info).unwrap();
        let plane = |i: u32, w: u32, h: u32| -> Vec<u8> {
            let stride = frame.plane_stride()[i as usize] as usize;
            let data = frame.plane_data(i).unwrap();
            (0..h as usize).flat_map(|r| data[r * stride..r * stride + w as usize].to_vec()).collect()
        };
        let (w, h) = (info.width(), info.height());
        (w, h, plane(0, w, h), plane(1, w.div_ceil(2), h.div_ceil(2)), plane(2, w.div_ceil(2), h.div_ceil(2)))
    }

    fn spread(v: &[u8]) -> u8 {
        v.iter().max().unwrap() - v.iter().min().unwrap()
    }

    #[test]
    fn a_gop_of_colour_bars_gives_a_colour_jpeg_of_the_asked_width() {
        let gop = encoded_gop(640, 360, 20);
        let dec = crate::camera::pick_decoder(&crate::config::DEFAULT_DECODERS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("a decoder");
        for (upto, width) in [(0, 480), (19, 320), (100, 100)] {
            // 100 px is below the least width: 160.
            let jpeg = jpeg_from_gop(&gop, upto, width, &dec).unwrap();
            assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");
            let (w, h, y, u, v) = decode_jpeg(&jpeg);
            assert_eq!(w, width.max(MIN_WIDTH), "width clamped to at least 160");
            assert_eq!(h, (w * 360 / 640) & !1, "aspect kept");
            assert!(spread(&y) > 100, "bars of different brightness");
            // Colour bars: strongly coloured, not grey (a grey picture has U = V = 128).
            assert!(spread(&u) > 100 && spread(&v) > 100, "chroma flat: U {} V {}", spread(&u), spread(&v));
        }
    }

    #[test]
    fn a_gop_not_starting_at_a_keyframe_or_a_missing_decoder_is_an_error() {
        let mut gop = encoded_gop(320, 180, 3);
        assert_eq!(jpeg_from_gop(&gop, 0, 320, "no-such-decoder").unwrap_err().kind(), ErrorKind::Unavailable);
        gop.units.remove(0);
        assert_eq!(jpeg_from_gop(&gop, 0, 320, "avdec_h264").unwrap_err().kind(), ErrorKind::Invalid);
        let empty = Feed::new();
        assert_eq!(snapshot(&empty, 320, "avdec_h264").unwrap_err().kind(), ErrorKind::Unavailable);
    }
}
