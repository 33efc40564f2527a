//! A reader of fragmented MP4 box structure, just enough to index a segment: how long
//! it plays and where its last complete fragment ends. It does no I/O of its own (it
//! reads through a closure), so it can be fed any bytes, including fuzzed ones, and
//! never panics on them.

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// Ticks per second of the (first) track.
    pub timescale: u32,
    /// Sum of the sample durations of all complete fragments, in ticks.
    pub duration_ticks: u64,
    /// Complete `moof`+`mdat` pairs.
    pub fragments: u32,
    /// Byte offset just past the last complete fragment (or past `moov` if there is
    /// none): truncating the file here leaves a well-formed file.
    pub complete_end: u64,
}

impl Scan {
    pub fn duration_ms(&self) -> i64 {
        if self.timescale == 0 {
            return 0;
        }
        (self.duration_ticks as u128 * 1000 / self.timescale as u128) as i64
    }
}

/// Boxes we read whole are small; anything claiming more is malformed.
const MAX_HEADER_BOX: u64 = 4 << 20;

/// Reads the top-level boxes of a file of `len` bytes. `read_at(offset, buf)` fills
/// `buf` from `offset` or fails.
pub fn scan(len: u64, mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>) -> Result<Scan, String> {
    let mut out = Scan::default();
    let mut trex_default_duration = 0u32;
    let mut pos = 0u64;
    let mut seen_moov = false;
    // Duration of the moof just read, counted once its mdat turns out to be complete.
    let mut pending: Option<u64> = None;
    while pos + 8 <= len {
        let mut hdr = [0u8; 16];
        read_at(pos, &mut hdr[..8]).map_err(|e| format!("reading at {pos}: {e}"))?;
        let mut size = u32::from_be_bytes(hdr[0..4].try_into().unwrap()) as u64;
        let kind: [u8; 4] = hdr[4..8].try_into().unwrap();
        let mut header_len = 8u64;
        if size == 1 {
            if pos + 16 > len {
                break;
            }
            read_at(pos + 8, &mut hdr[8..16]).map_err(|e| format!("reading at {pos}: {e}"))?;
            size = u64::from_be_bytes(hdr[8..16].try_into().unwrap());
            header_len = 16;
        } else if size == 0 {
            size = len - pos;
        }
        if size < header_len {
            return Err(format!("box at {pos} has impossible size {size}"));
        }
        let end = pos.checked_add(size).ok_or("box size overflows")?;
        let complete = end <= len;
        match &kind {
            b"moov" | b"moof" => {
                if !complete {
                    break;
                }
                if size > MAX_HEADER_BOX {
                    return Err(format!("{} box at {pos} is too large ({size} bytes)", String::from_utf8_lossy(&kind)));
                }
                let mut body = vec![0u8; (size - header_len) as usize];
                read_at(pos + header_len, &mut body).map_err(|e| format!("reading at {pos}: {e}"))?;
                if &kind == b"moov" {
                    let (ts, trex) = parse_moov(&body)?;
                    out.timescale = ts;
                    trex_default_duration = trex;
                    seen_moov = true;
                    out.complete_end = end;
                } else {
                    if !seen_moov {
                        return Err("moof before moov".into());
                    }
                    pending = Some(parse_moof(&body, trex_default_duration)?);
                }
            }
            b"mdat" => {
                if !complete {
                    break;
                }
                if let Some(d) = pending.take() {
                    out.duration_ticks += d;
                    out.fragments += 1;
                    out.complete_end = end;
                }
            }
            _ => {
                if !complete {
                    break;
                }
                // Whole boxes between or after fragments (free, mfra, …) are kept.
                if pending.is_none() {
                    out.complete_end = end;
                }
            }
        }
        pos = end;
    }
    if !seen_moov {
        return Err("no moov box (not an MP4 file, or cut before its header)".into());
    }
    Ok(out)
}

/// Child boxes of a container body: (type, body).
fn children(mut b: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), String>> {
    std::iter::from_fn(move || {
        if b.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = b[4..8].try_into().unwrap();
        let (hl, size) = match size {
            0 => (8, b.len()),
            1 => {
                if b.len() < 16 {
                    return Some(Err("truncated large box".into()));
                }
                (16, u64::from_be_bytes(b[8..16].try_into().unwrap()) as usize)
            }
            s => (8, s),
        };
        if size < hl || size > b.len() {
            b = &[];
            return Some(Err(format!("child box {} has bad size {size}", String::from_utf8_lossy(&kind))));
        }
        let body = &b[hl..size];
        b = &b[size..];
        Some(Ok((kind, body)))
    })
}

fn find<'a>(b: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, String> {
    for c in children(b) {
        let (k, body) = c?;
        if &k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap())).ok_or_else(|| "box too short".to_string())
}

/// The first track's timescale, and the default sample duration from `mvex/trex`.
fn parse_moov(moov: &[u8]) -> Result<(u32, u32), String> {
    let trak = find(moov, b"trak")?.ok_or("moov has no trak")?;
    let mdia = find(trak, b"mdia")?.ok_or("trak has no mdia")?;
    let mdhd = find(mdia, b"mdhd")?.ok_or("mdia has no mdhd")?;
    let version = *mdhd.first().ok_or("empty mdhd")?;
    let timescale = if version == 1 { u32_at(mdhd, 20)? } else { u32_at(mdhd, 12)? };
    if timescale == 0 {
        return Err("track timescale is 0".into());
    }
    let trex_duration = match find(moov, b"mvex")? {
        Some(mvex) => match find(mvex, b"trex")? {
            Some(trex) => u32_at(trex, 12)?,
            None => 0,
        },
        None => 0,
    };
    Ok((timescale, trex_duration))
}

/// Total sample duration of the first track's runs in one `moof`.
fn parse_moof(moof: &[u8], trex_default: u32) -> Result<u64, String> {
    let mut total = 0u64;
    for c in children(moof) {
        let (k, traf) = c?;
        if &k != b"traf" {
            continue;
        }
        let mut default = trex_default;
        for c in children(traf) {
            let (k, b) = c?;
            match &k {
                b"tfhd" => {
                    let flags = u32_at(b, 0)? & 0xff_ffff;
                    let mut at = 8; // version+flags, track id
                    if flags & 0x01 != 0 {
                        at += 8;
                    }
                    if flags & 0x02 != 0 {
                        at += 4;
                    }
                    if flags & 0x08 != 0 {
                        default = u32_at(b, at)?;
                    }
                }
                b"trun" => {
                    let flags = u32_at(b, 0)? & 0xff_ffff;
                    let count = u32_at(b, 4)? as usize;
                    let mut at = 8;
                    if flags & 0x01 != 0 {
                        at += 4;
                    }
                    if flags & 0x04 != 0 {
                        at += 4;
                    }
                    let per_sample = [0x100, 0x200, 0x400, 0x800].iter().filter(|f| flags & **f != 0).count() * 4;
                    if per_sample > 0 && b.len() < at + count.saturating_mul(per_sample) {
                        return Err("trun shorter than its sample count".into());
                    }
                    if flags & 0x100 != 0 {
                        for i in 0..count {
                            total += u32_at(b, at + i * per_sample)? as u64;
                        }
                    } else {
                        total += default as u64 * count as u64;
                    }
                }
                _ => {}
            }
        }
        // Only the first track: segments have one video track.
        break;
    }
    Ok(total)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn full(version: u8, flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut v = ((version as u32) << 24 | flags).to_be_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    fn moov(timescale: u32, trex_dur: u32) -> Vec<u8> {
        let mut mdhd = vec![0u8; 8];
        mdhd.extend_from_slice(&timescale.to_be_bytes());
        mdhd.extend_from_slice(&0u32.to_be_bytes());
        let mdhd = bx(b"mdhd", &full(0, 0, &mdhd));
        let trak = bx(b"trak", &bx(b"mdia", &mdhd));
        let mut trex = 1u32.to_be_bytes().to_vec();
        trex.extend_from_slice(&1u32.to_be_bytes());
        trex.extend_from_slice(&trex_dur.to_be_bytes());
        let mvex = bx(b"mvex", &bx(b"trex", &full(0, 0, &trex)));
        bx(b"moov", &[trak, mvex].concat())
    }

    fn fragment(durations: &[u32], mdat_len: usize) -> Vec<u8> {
        let tfhd = bx(b"tfhd", &full(0, 0, &1u32.to_be_bytes()));
        let mut run = (durations.len() as u32).to_be_bytes().to_vec();
        for d in durations {
            run.extend_from_slice(&d.to_be_bytes());
        }
        let trun = bx(b"trun", &full(0, 0x100, &run));
        let moof = bx(b"moof", &bx(b"traf", &[tfhd, trun].concat()));
        [moof, bx(b"mdat", &vec![0u8; mdat_len])].concat()
    }

    pub(crate) fn synthetic_file(fragments: usize) -> Vec<u8> {
        let mut f = bx(b"ftyp", b"isomiso6");
        f.extend(moov(90_000, 3000));
        for _ in 0..fragments {
            f.extend(fragment(&[3000; 30], 100));
        }
        f
    }

    fn scan_vec(v: &[u8]) -> Result<Scan, String> {
        scan(v.len() as u64, |off, buf| {
            let off = off as usize;
            buf.copy_from_slice(v.get(off..off + buf.len()).ok_or_else(|| std::io::Error::other("eof"))?);
            Ok(())
        })
    }

    #[test]
    fn sums_fragment_durations() {
        let f = synthetic_file(3);
        let s = scan_vec(&f).unwrap();
        assert_eq!(s.fragments, 3);
        assert_eq!(s.timescale, 90_000);
        assert_eq!(s.duration_ms(), 3000);
        assert_eq!(s.complete_end, f.len() as u64);
    }

    #[test]
    fn a_cut_fragment_is_not_counted_and_marks_where_to_truncate() {
        let f = synthetic_file(2);
        let whole = f.len();
        let cut = &f[..whole - 50];
        let s = scan_vec(cut).unwrap();
        assert_eq!(s.fragments, 1);
        assert_eq!(s.duration_ms(), 1000);
        let one = synthetic_file(1).len() as u64;
        assert_eq!(s.complete_end, one);
    }

    #[test]
    fn default_durations_come_from_trex() {
        let mut f = bx(b"ftyp", b"isom");
        f.extend(moov(1000, 40));
        let tfhd = bx(b"tfhd", &full(0, 0, &1u32.to_be_bytes()));
        let trun = bx(b"trun", &full(0, 0, &25u32.to_be_bytes()));
        f.extend(bx(b"moof", &bx(b"traf", &[tfhd, trun].concat())));
        f.extend(bx(b"mdat", &[0; 4]));
        assert_eq!(scan_vec(&f).unwrap().duration_ms(), 1000);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(scan_vec(b"").is_err());
        assert!(scan_vec(b"hello world, not an mp4 at all").is_err());
        let mut f = synthetic_file(1);
        f[3] = 4; // ftyp claims 4 bytes
        assert!(scan_vec(&f).is_err());
        // Every prefix and a few corruptions of a good file must not panic.
        let good = synthetic_file(2);
        for n in 0..good.len() {
            let _ = scan_vec(&good[..n]);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = scan_vec(&bad);
        }
    }
}
