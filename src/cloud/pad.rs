//! Padded object sizes, so the bucket does not tell a clip's exact length.
//!
//! Sizes are rounded up with Padmé (Nikitin et al., "Reducing Metadata Leakage from
//! Encrypted Files and Communication with PURBs", 2019): a length L is rounded so that
//! only its top ~log2(log2 L) + 1 bits stay significant. That leaks O(log log L) bits
//! and costs at most ~12 % (less than 6.25 % from 256 bytes up).
//!
//! The padding goes *inside* the ciphertext and keeps the plaintext valid: a clip gets a
//! trailing top-level MP4 `free` box, an index gets JSON whitespace.

/// Padmé: the padded length for a plaintext of `len` bytes.
///
/// With E = ⌊log2 L⌋ and S = ⌊log2 E⌋ + 1, the low E − S bits are rounded up to zero.
/// For 0 and 1 the formula is undefined (log2 0) and `len` is returned unchanged; up to
/// 8 bytes E − S is 0, so nothing changes anyway. A length so close to `u64::MAX` that
/// rounding would overflow (none exists in practice) is also returned unchanged.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = u64::from(len.ilog2());
    let s = u64::from(e.ilog2()) + 1;
    let mask = (1u64 << (e - s)) - 1;
    len.checked_add(mask).map_or(len, |up| up & !mask)
}

/// Size of an MP4 box header with a 32-bit size field.
const BOX_HEADER: u64 = 8;
/// Size of an MP4 box header with a 64-bit `largesize` field.
const LARGE_BOX_HEADER: u64 = 16;

/// The padded length of an MP4 clip of `len` bytes.
///
/// Rule: `padme(len + 8)`. A `free` box needs at least its 8-byte header, so a pad of
/// 1..=7 bytes cannot be written; reserving the header before rounding makes the pad
/// always ≥ 8 (every clip gets a `free` box), and the result is still a Padmé size.
pub fn mp4_padded_len(len: u64) -> u64 {
    padme(len.saturating_add(BOX_HEADER))
}

/// A top-level MP4 `free` box of exactly `pad` bytes, to append after the last box of a
/// clip. Players skip `free` boxes, so the padded file plays as before.
///
/// `pad` must be 0 (nothing) or ≥ 8; [`mp4_padded_len`] guarantees that. Pads beyond
/// `u32::MAX` use the 64-bit `largesize` form.
pub fn mp4_free_box(pad: u64) -> crate::Result<Vec<u8>> {
    if pad == 0 {
        return Ok(Vec::new());
    }
    let len = usize::try_from(pad).map_err(|_| crate::Error::internal(format!("MP4 padding of {pad} bytes is too large")))?;
    let mut out = mp4_free_header(pad)?;
    debug_assert!(out.len() as u64 <= LARGE_BOX_HEADER);
    out.resize(len, 0);
    Ok(out)
}

/// Only the header of [`mp4_free_box`]`(pad)` (8 or 16 bytes, or none for 0): the rest
/// of the box is zeros, which a caller can stream instead of holding them in memory.
pub fn mp4_free_header(pad: u64) -> crate::Result<Vec<u8>> {
    match u32::try_from(pad) {
        _ if pad == 0 => Ok(Vec::new()),
        Ok(size) if pad >= BOX_HEADER => Ok([&size.to_be_bytes()[..], b"free"].concat()),
        Ok(_) => Err(crate::Error::internal(format!(
            "MP4 padding of {pad} bytes is shorter than a box header (8); use mp4_padded_len"
        ))),
        Err(_) => Ok([&1u32.to_be_bytes()[..], b"free", &pad.to_be_bytes()[..]].concat()),
    }
}

/// The padded length of a JSON-lines index of `len` bytes written *without* its final
/// newline. Rule: `padme(len + 1)`, so the pad is ≥ 1 and always ends the file with `\n`.
pub fn json_lines_padded_len(len: u64) -> u64 {
    padme(len.saturating_add(1))
}

/// `pad` bytes to append right after the last JSON value of an index (before any final
/// newline): spaces, then one `\n`. The spaces become trailing whitespace of the last
/// line, which JSON allows, so every line still parses and no blank line is added
/// (a whitespace-only line would trip strict JSON-lines readers).
pub fn json_lines_pad(pad: u64) -> Vec<u8> {
    let Ok(pad) = usize::try_from(pad) else {
        // Unreachable for an index that fits in memory; padding is best effort.
        return vec![b'\n'];
    };
    let mut out = vec![b' '; pad];
    if let Some(last) = out.last_mut() {
        *last = b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    #[test]
    fn padme_known_values() {
        let cases = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (7, 7),
            (9, 10),
            (17, 18),
            (33, 36),
            (100, 104),
            (129, 144),
            (257, 272),
            (1000, 1024),
            (1025, 1088),
            (1_000_000, 1_015_808),
            (1 << 40, 1 << 40),
            (u64::MAX, u64::MAX),
        ];
        for (len, want) in cases {
            assert_eq!(padme(len), want, "padme({len})");
        }
    }

    proptest! {
        #[test]
        fn padme_bounds(len in 2u64..(u64::MAX >> 1)) {
            let p = padme(len);
            let e = len.ilog2();
            let s = e.ilog2() + 1;
            prop_assert!(p >= len);
            // The overhead is below L / 2^S: at most ~12 %, under 6.25 % from 2^8 on.
            prop_assert!((p - len) < (len >> s).max(1));
            prop_assert!((p - len) as f64 <= 0.12 * len as f64);
            if len >= 1 << 8 {
                prop_assert!((p - len) as f64 <= 0.0625 * len as f64);
            }
        }

        #[test]
        fn padme_monotonic_and_idempotent(a in 0u64..(u64::MAX >> 1), b in 0u64..(u64::MAX >> 1)) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(padme(lo) <= padme(hi));
            prop_assert_eq!(padme(padme(a)), padme(a));
        }

        #[test]
        fn mp4_pad_is_a_whole_box(len in 0u64..(1 << 40)) {
            let pad = mp4_padded_len(len) - len;
            prop_assert!(pad >= 8);
            prop_assert_eq!(padme(mp4_padded_len(len)), mp4_padded_len(len));
        }
    }

    #[test]
    fn free_box_layout() {
        assert!(mp4_free_box(0).unwrap().is_empty());
        for bad in 1..8 {
            assert!(mp4_free_box(bad).is_err(), "{bad}");
        }
        let b = mp4_free_box(8).unwrap();
        assert_eq!(b, b"\0\0\0\x08free");
        let b = mp4_free_box(300).unwrap();
        assert_eq!(b.len(), 300);
        assert_eq!(&b[..8], b"\0\0\x01\x2cfree");
        assert!(b[8..].iter().all(|&x| x == 0));
    }

    /// Encodes a 1 s test clip with ffmpeg; the tool is part of the hub's dependencies.
    fn make_mp4(dir: &std::path::Path, extra: &[&str]) -> std::path::PathBuf {
        let path = dir.join("clip.mp4");
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i", "testsrc=d=1:s=160x120:r=15"])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .args(extra)
            .arg(&path)
            .status()
            .expect("ffmpeg must be installed for this test");
        assert!(status.success(), "ffmpeg failed");
        path
    }

    fn ffprobe_clean(path: &std::path::Path) -> String {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration:stream=codec_name,nb_read_frames"])
            .args(["-count_frames", "-of", "compact"])
            .arg(path)
            .output()
            .expect("ffprobe must be installed for this test");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "ffprobe: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The top-level boxes of an MP4 file as (type, size), checking that they tile the
    /// file exactly. ffprobe alone is lenient about trailing junk, so this is the strict
    /// half of the check.
    fn top_level_boxes(bytes: &[u8]) -> Vec<([u8; 4], u64)> {
        let mut boxes = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let head = &bytes[at..at + 8];
            let kind: [u8; 4] = head[4..8].try_into().unwrap();
            let size = match u32::from_be_bytes(head[..4].try_into().unwrap()) {
                1 => u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap()),
                n => u64::from(n),
            };
            assert!(size >= 8, "box {:?} at {at} has size {size}", kind);
            boxes.push((kind, size));
            at += usize::try_from(size).unwrap();
        }
        assert_eq!(at, bytes.len(), "boxes overrun the file");
        boxes
    }

    fn assert_padding_keeps_mp4_valid(extra: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        let path = make_mp4(dir.path(), extra);
        let before = ffprobe_clean(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len() as u64;
        let target = mp4_padded_len(len);
        bytes.extend(mp4_free_box(target - len).unwrap());
        assert_eq!(bytes.len() as u64, target);
        let boxes = top_level_boxes(&bytes);
        assert_eq!(boxes.last(), Some(&(*b"free", target - len)));
        std::fs::write(&path, &bytes).unwrap();
        let after = ffprobe_clean(&path);
        assert_eq!(before, after);
        assert!(after.contains("codec_name=h264") && after.contains("nb_read_frames=15"), "{after}");
    }

    #[test]
    fn padded_mp4_still_probes() {
        assert_padding_keeps_mp4_valid(&[]);
    }

    #[test]
    fn padded_fragmented_mp4_still_probes() {
        assert_padding_keeps_mp4_valid(&["-movflags", "frag_keyframe+empty_moov"]);
    }

    #[test]
    fn padded_json_lines_still_parse() {
        let lines = [
            r#"{"id":"a","camera":"porch","start":"2026-01-02T03:04:05Z","end":"2026-01-02T03:04:09Z","bytes":1234}"#,
            r#"{"id":"b","camera":"yard","start":"2026-01-02T04:00:00Z","end":"2026-01-02T04:00:30Z","bytes":98765}"#,
        ];
        // An index object always holds at least one clip line.
        for n in 1..=lines.len() {
            let mut text = lines[..n].join("\n").into_bytes();
            let len = text.len() as u64;
            let target = json_lines_padded_len(len);
            text.extend(json_lines_pad(target - len));
            assert_eq!(text.len() as u64, target);
            assert!(text.ends_with(b"\n"));
            let text = String::from_utf8(text).unwrap();
            let parsed: Vec<serde_json::Value> =
                text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect();
            assert_eq!(parsed.len(), n, "{text:?}");
        }
    }

    #[test]
    fn json_pad_shapes() {
        assert!(json_lines_pad(0).is_empty());
        assert_eq!(json_lines_pad(1), b"\n");
        assert_eq!(json_lines_pad(4), b"   \n");
    }
}
