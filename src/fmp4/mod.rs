//! Fragmented MP4 (ISO BMFF) for H.264: the one writer the live view, range downloads
//! and (later) recordings and clips go through. Pure: no I/O, no GStreamer, no clock.
//!
//! A stream is an init segment (`ftyp` + `moov` with `mvex`) made from the stream's
//! parameter sets, then fragments (`moof` + `mdat`), each one or more samples with
//! explicit durations and a `tfdt` decode time, so a browser's Media Source Extensions
//! (or a `<video>` fed the bytes progressively, or ffprobe reading a file) can play
//! from the first fragment on.
//!
//! The boxes are built with `mp4-atom`. Nothing here assumes live video: any timescale,
//! any number of samples per fragment, B-frames through `cts_offset`.
//! [`read`] is the other direction: the track and sample index of a fragmented file.

pub mod read;

use bytes::Bytes;
use mp4_atom::{Atom, Encode};

use crate::error::{Error, Result};

/// The one track's id in everything written here.
const TRACK_ID: u32 = 1;

/// `sample_depends_on` = 2 (does not depend on others: an IDR), sync.
pub const KEY_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on` = 1 (depends on others), `sample_is_non_sync_sample`.
pub const DELTA_FLAGS: u32 = 0x0101_0000;

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

fn atom_err(what: &str) -> impl FnOnce(mp4_atom::Error) -> Error + '_ {
    move |e| Error::invalid(format!("{what}: {e}"))
}

/// The avcC as mp4-atom's struct, checked: version 1, at least one SPS and PPS.
fn parse_avcc(avcc: &[u8]) -> Result<mp4_atom::Avcc> {
    if avcc.len() < 7 {
        return Err(Error::invalid(format!("avcC: {} bytes is too short for a decoder configuration record", avcc.len())));
    }
    let mut buf = avcc;
    let parsed = mp4_atom::Avcc::decode_body(&mut buf).map_err(atom_err("avcC"))?;
    if parsed.sequence_parameter_sets.is_empty() || parsed.picture_parameter_sets.is_empty() {
        return Err(Error::invalid("avcC: no SPS or no PPS"));
    }
    Ok(parsed)
}

/// The `codecs` parameter of the MIME type for MSE (`avc1.PPCCLL` from the avcC).
pub fn codec_string(avcc: &[u8]) -> Result<String> {
    if avcc.len() < 4 || avcc[0] != 1 {
        return Err(Error::invalid("avcC: not an AVC decoder configuration record (version 1)"));
    }
    Ok(format!("avc1.{:02x}{:02x}{:02x}", avcc[1], avcc[2], avcc[3]))
}

fn dimension(name: &str, v: u32) -> Result<u16> {
    u16::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| Error::invalid(format!("track {name}: must be 1..=65535, got {v}")))
}

/// `ftyp` + `moov` for `track`.
pub fn init_segment(track: &Track) -> Result<Vec<u8>> {
    let width = dimension("width", track.width)?;
    let height = dimension("height", track.height)?;
    if track.timescale == 0 {
        return Err(Error::invalid("track timescale: must be above 0"));
    }
    let avcc = parse_avcc(&track.avcc)?;
    let ftyp = mp4_atom::Ftyp {
        major_brand: b"iso5".into(),
        minor_version: 512,
        compatible_brands: vec![b"iso5".into(), b"iso6".into(), b"mp41".into()],
    };
    let avc1 = mp4_atom::Avc1 {
        visual: mp4_atom::Visual { data_reference_index: 1, width, height, compressor: "".into(), ..Default::default() },
        avcc,
        ..Default::default()
    };
    let moov = mp4_atom::Moov {
        mvhd: mp4_atom::Mvhd {
            timescale: track.timescale,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: TRACK_ID + 1,
            ..Default::default()
        },
        mvex: Some(mp4_atom::Mvex {
            mehd: None,
            trex: vec![mp4_atom::Trex { track_id: TRACK_ID, default_sample_description_index: 1, ..Default::default() }],
        }),
        trak: vec![mp4_atom::Trak {
            tkhd: mp4_atom::Tkhd {
                track_id: TRACK_ID,
                enabled: true,
                in_movie: true,
                width: width.into(),
                height: height.into(),
                ..Default::default()
            },
            mdia: mp4_atom::Mdia {
                mdhd: mp4_atom::Mdhd { timescale: track.timescale, language: "und".into(), ..Default::default() },
                hdlr: mp4_atom::Hdlr { handler: b"vide".into(), name: "homehub video".into() },
                minf: mp4_atom::Minf {
                    vmhd: Some(mp4_atom::Vmhd::default()),
                    dinf: mp4_atom::Dinf { dref: mp4_atom::Dref { entries: vec![mp4_atom::Url::default().into()] } },
                    stbl: mp4_atom::Stbl {
                        stsd: mp4_atom::Stsd { codecs: vec![avc1.into()] },
                        stco: Some(mp4_atom::Stco::default()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::with_capacity(track.avcc.len() + 700);
    ftyp.encode(&mut out).map_err(atom_err("encoding ftyp"))?;
    moov.encode(&mut out).map_err(atom_err("encoding moov"))?;
    Ok(out)
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
        if samples.is_empty() {
            return Err(Error::invalid("fragment: no samples"));
        }
        let mut payload = 0usize;
        let mut entries = Vec::with_capacity(samples.len());
        for (i, s) in samples.iter().enumerate() {
            let size = u32::try_from(s.data.len())
                .map_err(|_| Error::invalid(format!("fragment: sample {i} is {} bytes, above 4 GiB", s.data.len())))?;
            payload = payload
                .checked_add(s.data.len())
                .ok_or_else(|| Error::invalid("fragment: samples add up to more than memory can hold"))?;
            entries.push(mp4_atom::TrunEntry {
                duration: Some(s.duration),
                size: Some(size),
                flags: Some(if s.key { KEY_FLAGS } else { DELTA_FLAGS }),
                cts: Some(s.cts_offset.into()),
            });
        }
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let mut moof = mp4_atom::Moof {
            mfhd: mp4_atom::Mfhd { sequence_number: self.sequence },
            traf: vec![mp4_atom::Traf {
                tfhd: mp4_atom::Tfhd { track_id: TRACK_ID, default_base_is_moof: true, ..Default::default() },
                tfdt: Some(mp4_atom::Tfdt { base_media_decode_time: decode_time }),
                trun: vec![mp4_atom::Trun { data_offset: Some(0), samples: entries.into() }],
                ..Default::default()
            }],
        };
        let mdat_header = mp4_atom::Header { kind: mp4_atom::Mdat::KIND, size: Some(payload) };
        let mut head = Vec::with_capacity(16);
        mdat_header.encode(&mut head).map_err(atom_err("encoding mdat"))?;
        // The data offset (from the start of the moof) does not change the moof's size:
        // encode once to learn it, then again with it.
        let mut out = Vec::with_capacity(payload + 64 + 16 * samples.len());
        moof.encode(&mut out).map_err(atom_err("encoding moof"))?;
        let offset = i32::try_from(out.len() + head.len()).map_err(|_| Error::invalid("fragment: moof too large"))?;
        moof.traf[0].trun[0].data_offset = Some(offset);
        out.clear();
        moof.encode(&mut out).map_err(atom_err("encoding moof"))?;
        out.extend_from_slice(&head);
        for s in samples {
            out.extend_from_slice(&s.data);
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests;
