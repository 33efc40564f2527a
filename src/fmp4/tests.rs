//! The writer and the reader against each other, against mp4-atom's decoder, and
//! against real H.264 from GStreamer (x264) read back by ffprobe and ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use mp4_atom::Decode;

use super::read::{Index, index_bytes};
use super::*;

/// A real stream: `frames` frames of 320x240 at 15 fps, a keyframe every 30, muxed by
/// `mp4mux fragment-duration=1000` like our segments. `x264` adds encoder properties.
pub(crate) fn gst_file(dir: &Path, name: &str, frames: u32, x264: &str) -> PathBuf {
    let path = dir.join(name);
    let line = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 \
         ! x264enc key-int-max=30 {x264} ! video/x-h264,stream-format=avc,alignment=au,profile=high \
         ! h264parse ! mp4mux fragment-duration=1000 ! filesink location={}",
        path.display()
    );
    let out = Command::new("gst-launch-1.0").arg("-q").args(line.split_whitespace()).output().expect("gst-launch-1.0");
    assert!(out.status.success(), "gst-launch-1.0 failed: {}", String::from_utf8_lossy(&out.stderr));
    path
}

/// The samples of an index with their bytes.
fn samples_of(file: &[u8], idx: &Index) -> Vec<Sample> {
    idx.samples
        .iter()
        .map(|s| Sample {
            data: Bytes::copy_from_slice(&file[s.offset as usize..s.offset as usize + s.size as usize]),
            duration: s.duration,
            key: s.key,
            cts_offset: s.cts_offset,
        })
        .collect()
}

/// Writes `samples` as init + fragments, a new fragment at each keyframe or after
/// `per_fragment` samples.
fn write_file(track: &Track, samples: &[Sample], per_fragment: usize) -> Vec<u8> {
    let mut out = init_segment(track).unwrap();
    let mut f = Fragmenter::new();
    let mut t = 0u64;
    let mut group: Vec<Sample> = Vec::new();
    for s in samples {
        if !group.is_empty() && (s.key || group.len() >= per_fragment) {
            out.extend(f.fragment(t, &group).unwrap());
            t += group.iter().map(|s| s.duration as u64).sum::<u64>();
            group.clear();
        }
        group.push(s.clone());
    }
    if !group.is_empty() {
        out.extend(f.fragment(t, &group).unwrap());
    }
    out
}

#[derive(Debug)]
struct Probe {
    frames: u64,
    duration: f64,
    codec: String,
    width: u64,
    height: u64,
}

fn ffprobe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames,codec_name,width,height:format=duration", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    Probe {
        frames: s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
        duration: v["format"]["duration"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0.0),
        codec: s["codec_name"].as_str().unwrap_or("").to_string(),
        width: s["width"].as_u64().unwrap_or(0),
        height: s["height"].as_u64().unwrap_or(0),
    }
}

/// ffmpeg's complaints while decoding the whole file (empty: it decoded cleanly).
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn fake_track() -> Track {
    // SPS/PPS bytes as x264 writes them for High@3.1 (from a 1280x720 stream).
    let sps: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x80, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80];
    let pps: &[u8] = &[0x68, 0xe9, 0x7b, 0x2c, 0x8b];
    let mut avcc = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
    avcc.extend((sps.len() as u16).to_be_bytes());
    avcc.extend(sps);
    avcc.push(1);
    avcc.extend((pps.len() as u16).to_be_bytes());
    avcc.extend(pps);
    Track { width: 1280, height: 720, timescale: 90_000, avcc: avcc.into() }
}

#[test]
fn codec_string_comes_from_profile_compatibility_and_level() {
    assert_eq!(codec_string(&fake_track().avcc).unwrap(), "avc1.64001f");
    assert_eq!(codec_string(&[1, 0x42, 0xc0, 0x1e, 0xff]).unwrap(), "avc1.42c01e");
    assert!(codec_string(&[0, 0x64, 0, 0x1f]).is_err(), "version 0 is not an avcC");
    assert!(codec_string(&[1, 0x64]).is_err());
}

#[test]
fn codec_string_of_a_real_avcc() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(gst_file(dir.path(), "a.mp4", 15, "")).unwrap();
    let idx = index_bytes(&bytes).unwrap();
    let avcc = &idx.track.avcc;
    let s = codec_string(avcc).unwrap();
    // profile=high was asked for: 0x64; the rest are the record's own bytes.
    assert_eq!(s, format!("avc1.64{:02x}{:02x}", avcc[2], avcc[3]));
    let sps_len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
    assert_eq!(&avcc[9..12], &avcc[1..4], "the SPS names the same profile and level ({sps_len} bytes)");
}

#[test]
fn init_segment_decodes_back() {
    let track = fake_track();
    let init = init_segment(&track).unwrap();
    let mut buf = init.as_slice();
    let ftyp = mp4_atom::Ftyp::decode(&mut buf).unwrap();
    assert_eq!(ftyp.major_brand, b"iso5".into());
    assert_eq!(ftyp.compatible_brands, vec![b"iso5".into(), b"iso6".into(), b"mp41".into()]);
    let moov = mp4_atom::Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty(), "nothing after moov");
    assert_eq!(moov.mvex.as_ref().unwrap().trex[0].track_id, 1);
    let trak = &moov.trak[0];
    assert_eq!(trak.mdia.mdhd.timescale, 90_000);
    assert_eq!(trak.mdia.hdlr.handler, b"vide".into());
    assert!(trak.mdia.minf.vmhd.is_some());
    let stbl = &trak.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty() && stbl.stco.as_ref().unwrap().entries.is_empty());
    let mp4_atom::Codec::Avc1(avc1) = &stbl.stsd.codecs[0] else { panic!("not avc1: {:?}", stbl.stsd.codecs) };
    assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
    let mut avcc = Vec::new();
    mp4_atom::Atom::encode_body(&avc1.avcc, &mut avcc).unwrap();
    assert_eq!(avcc, track.avcc.to_vec(), "the avcC goes in unchanged");
    // Our reader agrees.
    let idx = index_bytes(&init).unwrap();
    assert_eq!(idx.track, track);
    assert!(idx.samples.is_empty());
}

#[test]
fn bad_tracks_are_refused_naming_the_field() {
    let t = fake_track();
    let e = init_segment(&Track { width: 0, ..t.clone() }).unwrap_err();
    assert!(e.message().contains("width"), "{}", e.message());
    let e = init_segment(&Track { height: 70_000, ..t.clone() }).unwrap_err();
    assert!(e.message().contains("height"), "{}", e.message());
    let e = init_segment(&Track { timescale: 0, ..t.clone() }).unwrap_err();
    assert!(e.message().contains("timescale"), "{}", e.message());
    let e = init_segment(&Track { avcc: Bytes::from_static(&[1, 2, 3]), ..t }).unwrap_err();
    assert!(e.message().contains("avcC"), "{}", e.message());
    assert!(Fragmenter::new().fragment(0, &[]).is_err());
}

#[test]
fn fragments_decode_back_with_offsets_flags_and_cts() {
    let samples = vec![
        Sample { data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 1]), duration: 3000, key: true, cts_offset: 6000 },
        Sample { data: Bytes::from_static(&[0, 0, 0, 3, 0x41, 2, 3]), duration: 3000, key: false, cts_offset: -3000 },
        Sample { data: Bytes::from_static(&[0, 0, 0, 1, 0x01]), duration: 2999, key: false, cts_offset: 0 },
    ];
    let mut f = Fragmenter::new();
    let first = f.fragment(1 << 33, &samples).unwrap();
    let second = f.fragment((1 << 33) + 8999, &samples[..1]).unwrap();
    let mut buf = first.as_slice();
    let moof = mp4_atom::Moof::decode(&mut buf).unwrap();
    assert_eq!(moof.mfhd.sequence_number, 1);
    let traf = &moof.traf[0];
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 1 << 33, "a 64-bit decode time survives");
    let run = &traf.trun[0];
    let entries: Vec<_> = run.samples.iter().collect();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].flags, Some(KEY_FLAGS));
    assert_eq!(entries[1].flags, Some(DELTA_FLAGS));
    assert_eq!(entries.iter().map(|e| e.cts.unwrap()).collect::<Vec<_>>(), vec![6000, -3000, 0]);
    assert_eq!(entries.iter().map(|e| e.size.unwrap()).collect::<Vec<_>>(), vec![6, 7, 5]);
    let mdat = mp4_atom::Mdat::decode(&mut buf).unwrap();
    assert!(buf.is_empty());
    let off = run.data_offset.unwrap() as usize;
    assert_eq!(&first[off..off + 6], &samples[0].data[..], "the data offset points at the first sample");
    assert_eq!(mdat.data.len(), 18);
    let moof2 = mp4_atom::Moof::decode(&mut second.as_slice()).unwrap();
    assert_eq!(moof2.mfhd.sequence_number, 2);

    // The reader reads the writer's output back exactly.
    let track = fake_track();
    let file = [init_segment(&track).unwrap(), first, second].concat();
    let idx = index_bytes(&file).unwrap();
    assert_eq!(idx.samples.len(), 4);
    assert_eq!(idx.samples[3].decode_time, (1 << 33) + 8999);
    assert_eq!(samples_of(&file, &idx)[..3], samples[..]);
    assert_eq!(idx.end_time(), (1 << 33) + 8999 + 3000);
}

#[test]
fn a_real_stream_rewritten_plays_with_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = gst_file(dir.path(), "src.mp4", 60, "bframes=0");
    let src = std::fs::read(&src_path).unwrap();
    let idx = index_bytes(&src).unwrap();
    assert_eq!((idx.track.width, idx.track.height), (320, 240));
    assert_eq!(idx.samples.len(), 60, "mp4mux wrote 60 frames");
    assert!(idx.samples[0].key && idx.samples[30].key && !idx.samples[1].key);
    assert_eq!(idx.samples.iter().filter(|s| s.key).count(), 2);
    let samples = samples_of(&src, &idx);

    // As an export does: the source timescale, a fragment per GOP.
    let out = dir.path().join("gop.mp4");
    std::fs::write(&out, write_file(&idx.track, &samples, usize::MAX)).unwrap();
    let p = ffprobe(&out);
    assert_eq!((p.codec.as_str(), p.width, p.height, p.frames), ("h264", 320, 240, 60), "{p:?}");
    assert!((p.duration - 4.0).abs() < 0.01, "60 frames at 15 fps play 4 s, ffprobe says {p:?}");
    assert_eq!(decode_errors(&out), "");

    // As live does: 90 kHz, one sample per fragment.
    let scale = |d: u32| (d as u64 * 90_000 / idx.track.timescale as u64) as u32;
    let live: Vec<Sample> = samples.iter().map(|s| Sample { duration: scale(s.duration), ..s.clone() }).collect();
    let track = Track { timescale: 90_000, ..idx.track.clone() };
    let out = dir.path().join("live.mp4");
    let bytes = write_file(&track, &live, 1);
    std::fs::write(&out, &bytes).unwrap();
    let p = ffprobe(&out);
    assert_eq!(p.frames, 60, "{p:?}");
    assert!((p.duration - 4.0).abs() < 0.01, "{p:?}");
    assert_eq!(decode_errors(&out), "");
    let back = index_bytes(&bytes).unwrap();
    assert_eq!(back.samples.len(), 60);
    assert_eq!(back.end_time(), 360_000);
}

#[test]
fn b_frames_keep_their_composition_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read(gst_file(dir.path(), "b.mp4", 60, "bframes=2 b-adapt=false")).unwrap();
    let idx = index_bytes(&src).unwrap();
    assert_eq!(idx.samples.len(), 60);
    assert!(idx.samples.iter().any(|s| s.cts_offset != 0), "x264 with B-frames reorders: some cts offsets are set");
    let out = dir.path().join("b-out.mp4");
    // Several samples per fragment, not aligned to GOPs.
    std::fs::write(&out, write_file(&idx.track, &samples_of(&src, &idx), 7)).unwrap();
    let p = ffprobe(&out);
    assert_eq!(p.frames, 60, "{p:?}");
    assert_eq!(decode_errors(&out), "");
    // Presentation order comes out strictly increasing, one frame apart.
    let pts = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts", "-of", "csv=p=0"])
        .arg(&out)
        .output()
        .unwrap();
    let out = pts;
    let pts: Vec<i64> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect();
    assert_eq!(pts.len(), 60, "{}", String::from_utf8_lossy(&out.stdout));
    assert!(pts.windows(2).all(|w| w[1] > w[0]), "frames out of order: {pts:?}");
}

#[test]
fn a_cut_off_fragment_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read(gst_file(dir.path(), "c.mp4", 45, "bframes=0")).unwrap();
    let whole = index_bytes(&src).unwrap();
    // Into the last fragment's mdat (mp4mux ends the file with an mfra after it).
    let last = whole.samples.last().unwrap();
    let cut = index_bytes(&src[..last.offset as usize + 1]).unwrap();
    assert!(cut.samples.len() < whole.samples.len() && !cut.samples.is_empty());
    assert_eq!(cut.samples[..], whole.samples[..cut.samples.len()]);
}

#[test]
fn garbage_never_panics() {
    assert!(index_bytes(b"").is_err());
    assert!(index_bytes(b"hello world, not an mp4 at all").is_err());
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(gst_file(dir.path(), "g.mp4", 20, "bframes=0")).unwrap();
    let mut written = write_file(&index_bytes(&good).unwrap().track, &samples_of(&good, &index_bytes(&good).unwrap()), 4);
    written.truncate(written.len().min(6000));
    for file in [&good[..good.len().min(6000)], &written[..]] {
        for n in (0..file.len()).step_by(7) {
            let _ = index_bytes(&file[..n]);
        }
        // Every byte of the header boxes flipped, one at a time.
        for i in 0..file.len().min(2500) {
            let mut bad = file.to_vec();
            bad[i] ^= 0xff;
            let _ = index_bytes(&bad);
            bad[i] = 0x00;
            let _ = index_bytes(&bad);
        }
    }
}

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = index_bytes(&bytes);
    }

    #[test]
    fn random_boxes_after_a_good_header_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let mut f = init_segment(&fake_track()).unwrap();
        f.extend(b"\0\0\x01\x00moof");
        f.extend(tail);
        let _ = index_bytes(&f);
    }

    #[test]
    fn writer_output_reads_back(durations in proptest::collection::vec(1u32..100_000, 1..40), key_every in 1usize..10) {
        let samples: Vec<Sample> = durations.iter().enumerate().map(|(i, d)| Sample {
            data: Bytes::from(vec![0, 0, 0, 1, i as u8]),
            duration: *d,
            key: i % key_every == 0,
            cts_offset: (i as i32 % 3) * 100 - 100,
        }).collect();
        let file = write_file(&fake_track(), &samples, 5);
        let idx = index_bytes(&file).unwrap();
        proptest::prop_assert_eq!(samples_of(&file, &idx), samples);
        proptest::prop_assert_eq!(idx.end_time(), durations.iter().map(|d| *d as u64).sum::<u64>());
    }
}
