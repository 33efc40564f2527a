//! The sample index of a fragmented MP4 file, as `mp4mux fragment-duration=…` writes our
//! segments (and as [`super::Fragmenter`] writes): the video track (avcC, size,
//! timescale) and every sample of its complete fragments in decode order, with its
//! decode time, duration, size, key flag, composition offset and byte offset.
//!
//! Pure: it reads through a `read_at` closure (or over bytes), never panics on garbage,
//! and bounds what it reads: header boxes ≤ [`MAX_HEADER_BOX`], samples ≤ [`MAX_SAMPLES`].
//! A fragment cut off at the end of the file (a segment being written, or a crash) is
//! left out, like [`crate::recorder::mp4::scan`] does.

use bytes::Bytes;
use mp4_atom::Atom;

use super::Track;
use crate::error::{Error, Result};

/// `moov` and `moof` are read whole; anything claiming more is malformed.
pub const MAX_HEADER_BOX: u64 = 4 << 20;
/// More samples than this in one file (about 18 h at 30 fps) is refused.
pub const MAX_SAMPLES: usize = 2_000_000;

/// One sample of the file, where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo {
    /// In track ticks from the start of the file's timeline.
    pub decode_time: u64,
    pub duration: u32,
    pub size: u32,
    pub key: bool,
    pub cts_offset: i32,
    /// Byte offset of the sample's data in the file.
    pub offset: u64,
}

/// What [`index`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub track: Track,
    pub samples: Vec<SampleInfo>,
}

impl Index {
    /// Decode time just past the last sample.
    pub fn end_time(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.decode_time + s.duration as u64)
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

/// The video track of a `moov` and its `trex` defaults.
struct TrackInfo {
    track: Track,
    id: u32,
    default_duration: u32,
    default_size: u32,
    default_flags: u32,
}

fn parse_moov(body: &[u8]) -> Result<TrackInfo> {
    let mut buf = body;
    let moov = mp4_atom::Moov::decode_body(&mut buf).map_err(|e| bad(format!("moov: {e}")))?;
    for trak in &moov.trak {
        if trak.mdia.hdlr.handler != b"vide".into() {
            continue;
        }
        let Some(mp4_atom::Codec::Avc1(avc1)) = trak.mdia.minf.stbl.stsd.codecs.first() else { continue };
        let timescale = trak.mdia.mdhd.timescale;
        if timescale == 0 {
            return Err(bad("video track timescale is 0"));
        }
        let mut avcc = Vec::new();
        avc1.avcc.encode_body(&mut avcc).map_err(|e| bad(format!("avcC: {e}")))?;
        let id = trak.tkhd.track_id;
        let trex = moov.mvex.as_ref().and_then(|m| m.trex.iter().find(|t| t.track_id == id));
        return Ok(TrackInfo {
            track: Track {
                width: avc1.visual.width as u32,
                height: avc1.visual.height as u32,
                timescale,
                avcc: Bytes::from(avcc),
            },
            id,
            default_duration: trex.map_or(0, |t| t.default_sample_duration),
            default_size: trex.map_or(0, |t| t.default_sample_size),
            default_flags: trex.map_or(0, |t| t.default_sample_flags),
        });
    }
    Err(bad("moov has no H.264 (avc1) video track"))
}

/// The samples of the track's runs in one `moof` that starts at `moof_start`;
/// `next_time` is where the previous fragment ended (used without a `tfdt`).
fn parse_moof(body: &[u8], moof_start: u64, t: &TrackInfo, next_time: u64, out: &mut Vec<SampleInfo>) -> Result<()> {
    let mut buf = body;
    let moof = mp4_atom::Moof::decode_body(&mut buf).map_err(|e| bad(format!("moof at {moof_start}: {e}")))?;
    for traf in moof.traf.iter().filter(|tr| tr.tfhd.track_id == t.id) {
        let base = traf.tfhd.base_data_offset.unwrap_or(moof_start);
        let mut time = traf.tfdt.as_ref().map_or(next_time, |d| d.base_media_decode_time);
        let duration = traf.tfhd.default_sample_duration.unwrap_or(t.default_duration);
        let size = traf.tfhd.default_sample_size.unwrap_or(t.default_size);
        let flags = traf.tfhd.default_sample_flags.unwrap_or(t.default_flags);
        let mut pos = base;
        for run in &traf.trun {
            if let Some(off) = run.data_offset {
                pos = base.checked_add_signed(off as i64).ok_or_else(|| bad("trun data offset before the file start"))?;
            }
            if out.len() + run.samples.len() > MAX_SAMPLES {
                return Err(bad(format!("more than {MAX_SAMPLES} samples in one file")));
            }
            for e in run.samples.iter() {
                let s = SampleInfo {
                    decode_time: time,
                    duration: e.duration.unwrap_or(duration),
                    size: e.size.unwrap_or(size),
                    key: e.flags.unwrap_or(flags) & 0x0001_0000 == 0,
                    cts_offset: e.cts.unwrap_or(0).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                    offset: pos,
                };
                time = time.checked_add(s.duration as u64).ok_or_else(|| bad("decode time overflows"))?;
                pos = pos.checked_add(s.size as u64).ok_or_else(|| bad("sample offset overflows"))?;
                out.push(s);
            }
        }
    }
    Ok(())
}

/// Indexes a file of `len` bytes; `read_at(offset, buf)` fills `buf` from `offset` or fails.
pub fn index(len: u64, mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>) -> Result<Index> {
    let mut track: Option<TrackInfo> = None;
    let mut samples = Vec::new();
    // Samples of the moof just read, kept once its mdat turns out to be complete.
    let mut pending = Vec::new();
    let mut next_time = 0u64;
    let mut pos = 0u64;
    let io = |pos: u64| move |e: std::io::Error| Error::internal(format!("reading at {pos}: {e}"));
    while pos + 8 <= len {
        let mut hdr = [0u8; 16];
        read_at(pos, &mut hdr[..8]).map_err(io(pos))?;
        let mut size = u32::from_be_bytes(hdr[0..4].try_into().expect("4 bytes")) as u64;
        let kind: [u8; 4] = hdr[4..8].try_into().expect("4 bytes");
        let mut header_len = 8u64;
        if size == 1 {
            if pos + 16 > len {
                break;
            }
            read_at(pos + 8, &mut hdr[8..16]).map_err(io(pos))?;
            size = u64::from_be_bytes(hdr[8..16].try_into().expect("8 bytes"));
            header_len = 16;
        } else if size == 0 {
            size = len - pos;
        }
        if size < header_len {
            return Err(bad(format!("box at {pos} has impossible size {size}")));
        }
        let end = pos.checked_add(size).ok_or_else(|| bad("box size overflows"))?;
        if end > len {
            break; // cut off: what came before is complete
        }
        match &kind {
            b"moov" | b"moof" => {
                if size > MAX_HEADER_BOX {
                    return Err(bad(format!("{} box at {pos} is too large ({size} bytes)", String::from_utf8_lossy(&kind))));
                }
                let mut body = vec![0u8; (size - header_len) as usize];
                read_at(pos + header_len, &mut body).map_err(io(pos))?;
                if &kind == b"moov" {
                    if track.is_some() {
                        return Err(bad("a second moov box"));
                    }
                    track = Some(parse_moov(&body)?);
                } else {
                    let t = track.as_ref().ok_or_else(|| bad("moof before moov"))?;
                    pending.clear();
                    parse_moof(&body, pos, t, next_time, &mut pending)?;
                    if samples.len() + pending.len() > MAX_SAMPLES {
                        return Err(bad(format!("more than {MAX_SAMPLES} samples in one file")));
                    }
                }
            }
            b"mdat" if !pending.is_empty() => {
                for s in &pending {
                    if s.offset < pos + header_len || s.offset + s.size as u64 > end {
                        return Err(bad(format!("a sample at {} ({} bytes) lies outside the mdat at {pos}", s.offset, s.size)));
                    }
                }
                next_time = pending.last().map_or(next_time, |s| s.decode_time + s.duration as u64);
                samples.append(&mut pending);
            }
            _ => {}
        }
        pos = end;
    }
    let track = track.ok_or_else(|| bad("no moov box (not an MP4 file, or cut before its header)"))?.track;
    Ok(Index { track, samples })
}

/// [`index`] over bytes in memory.
pub fn index_bytes(b: &[u8]) -> Result<Index> {
    index(b.len() as u64, |off, buf| {
        let start = usize::try_from(off).map_err(std::io::Error::other)?;
        let src = start.checked_add(buf.len()).and_then(|end| b.get(start..end));
        buf.copy_from_slice(src.ok_or_else(|| std::io::Error::other("read past the end"))?);
        Ok(())
    })
}
