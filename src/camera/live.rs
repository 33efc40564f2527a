//! Live feeds: the encoded stream of one camera (main or substream) as plain access
//! units, for live viewers (the web's WebSocket), snapshots and colour thumbnails.
//! Each feed keeps the frames since its last keyframe, so a new viewer starts at once.
//!
//! STUB: the public types are the contract other modules code against; the feed's
//! internals (subscriptions, bounds, skip-ahead) are being written (issue 11).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::sync::lock;

/// Which of a camera's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Main,
    /// The camera's low-resolution stream; a camera without one serves its main stream.
    Sub,
}

/// What a decoder needs to start, from the stream's caps. A new `Arc` (new pointer)
/// means new parameters: a viewer must start over with a new init segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The AVCDecoderConfigurationRecord (GStreamer's `codec_data`, stream-format=avc).
    pub avcc: Bytes,
    pub width: u32,
    pub height: u32,
    /// Frames per second the caps announce; 0.0 when unknown.
    pub fps: f64,
}

/// One access unit as it came from the camera (never re-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Length-prefixed NAL units (stream-format=avc, alignment=au).
    pub data: Bytes,
    /// Decode and presentation time on the pipeline's clock, in microseconds.
    pub dts_us: i64,
    pub pts_us: i64,
    /// An IDR frame: decoding may start here.
    pub key: bool,
    /// Wall-clock time it reached the hub.
    pub at_ms: i64,
}

/// A keyframe and the frames after it, with the parameters to decode them.
#[derive(Debug, Clone)]
pub struct Gop {
    pub params: Arc<Params>,
    /// Starts with a keyframe.
    pub units: Vec<Unit>,
}

/// One live stream of one camera.
#[derive(Debug, Default)]
pub struct Feed {
    gop: Mutex<Option<Gop>>,
}

impl Feed {
    pub fn new() -> Self {
        Feed::default()
    }

    /// The latest keyframe and what followed it, if the stream has started.
    pub fn latest_gop(&self) -> Option<Gop> {
        lock(&self.gop).clone()
    }
}
