//! Fragmented MP4 (ISO BMFF) for H.264: the one writer the live view, range downloads
//! and (later) recordings and clips go through. Pure: no I/O, no GStreamer, no clock.
//!
//! A stream is an init segment (`ftyp` + `moov` with `mvex`) made from the stream's
//! parameter sets, then fragments (`moof` + `mdat`), each one or more samples with
//! explicit durations and a `tfdt` decode time, so a browser's Media Source Extensions
//! (or a `<video>` fed the bytes progressively, or ffprobe reading a file) can play
//! from the first fragment on.
//!
//! STUB: the signatures are the contract other modules code against; the bodies are
//! being written (issue 11).

use bytes::Bytes;

use crate::error::Result;

/// One H.264 video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub width: u32,
    pub height: u32,
    /// Ticks per second of every duration and decode time given to this track.
    pub timescale: u32,
    /// The AVCDecoderConfigurationRecord (`avcC`: SPS, PPS, NAL length size), as in
    /// GStreamer's `codec_data` for `stream-format=avc`.
    pub avcc: Bytes,
}

/// One access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// NAL units, each prefixed by its length (the size `avcC` names, normally 4 bytes).
    pub data: Bytes,
    /// In track ticks.
    pub duration: u32,
    /// A sync sample (IDR): decoding may start here.
    pub key: bool,
    /// Presentation minus decode time, in ticks (0 without B-frames).
    pub cts_offset: i32,
}

/// The `codecs` parameter of the MIME type for MSE (`avc1.PPCCLL` from the avcC).
pub fn codec_string(avcc: &[u8]) -> Result<String> {
    let _ = avcc;
    todo!("fmp4::codec_string")
}

/// `ftyp` + `moov` for `track`.
pub fn init_segment(track: &Track) -> Result<Vec<u8>> {
    let _ = track;
    todo!("fmp4::init_segment")
}

/// Numbers the fragments of one stream (`mfhd` sequence numbers start at 1).
#[derive(Debug, Default)]
pub struct Fragmenter {
    sequence: u32,
}

impl Fragmenter {
    pub fn new() -> Self {
        Fragmenter { sequence: 0 }
    }

    /// One `moof` + `mdat` holding `samples` (not empty), the first decoded at
    /// `decode_time` ticks from the start of the stream.
    pub fn fragment(&mut self, decode_time: u64, samples: &[Sample]) -> Result<Vec<u8>> {
        let _ = (decode_time, samples);
        self.sequence += 1;
        todo!("fmp4::Fragmenter::fragment")
    }
}
