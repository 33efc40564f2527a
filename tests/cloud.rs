//! The encrypted clip relay end to end: `homehub serve` with real cameras (camsim) and a
//! real S3 server (moto, behind a proxy that records every byte the hub sends), the
//! owner's key from `homehub keys new`, Debian's `age` and ffprobe/ffmpeg as judges.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::s3::{self, S3};
use common::*;

const BUCKET: &str = "homehub-cloud";
const PREFIX: &str = "home";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `homehub keys new` into `dir/owner.key`; (key file, recipient).
fn owner_key(dir: &Path) -> (PathBuf, String) {
    let out = Command::new(HUB).args(["keys", "new"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let recipient = text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_string();
    let path = dir.join("owner.key");
    std::fs::write(&path, &text).unwrap();
    (path, recipient)
}

fn cloud_toml(s3: &S3, recipient: &str) -> String {
    format!(
        "[cloud]\nstore = \"s3://{BUCKET}/{PREFIX}\"\nendpoint = \"{}\"\nrecipients = [\"{recipient}\"]\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
        s3.endpoint(),
        s3::ACCESS_KEY,
        s3::SECRET_KEY
    )
}

/// Finished events with a clip: (event id, camera id, clip bytes).
fn clipped_events(hub: &Hub, cookie: &str) -> Vec<(i64, i64, i64)> {
    let mut evs: Vec<(i64, i64, i64)> = hub
        .events(cookie)
        .iter()
        .filter(|e| !e["end"].is_null() && !e["clip_url"].is_null())
        .map(|e| (e["id"].as_i64().unwrap(), e["camera_id"].as_i64().unwrap(), e["clip_bytes"].as_i64().expect("clip_bytes")))
        .collect();
    evs.sort();
    evs
}

/// Events still going on (no end yet): their ids.
fn open_events(hub: &Hub, cookie: &str) -> Vec<i64> {
    hub.events(cookie).iter().filter(|e| e["end"].is_null()).map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Debian's age opens `data` with the owner's key.
fn age_decrypt(key: &Path, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("age")
        .args(["-d", "-i"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("age (Debian package age)");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "age -d failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// What the bucket holds, judged object by object.
struct Bucket {
    /// key → raw object
    raw: Vec<(String, Vec<u8>)>,
    /// Every index line, as found (not merged), with the key of its index object.
    lines: Vec<(String, serde_json::Value)>,
    /// Names (last part of the key) of the MP4 objects.
    media: Vec<String>,
}

/// Reads every object straight from the S3 server and checks the format: names,
/// `age-encryption.org/v1`, opened by Debian's age with the owner's key, and each
/// plaintext either JSON lines or an MP4 that ffmpeg decodes without error.
fn inspect(s3: &S3, key: &Path, hub_id: &str, scratch: &Path) -> Bucket {
    let name_ok = |k: &str| {
        let rest = k.strip_prefix(&format!("{PREFIX}/{hub_id}/"));
        rest.is_some_and(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    };
    let mut b = Bucket { raw: Vec::new(), lines: Vec::new(), media: Vec::new() };
    for (k, _) in s3.list(BUCKET) {
        assert!(name_ok(&k), "object name {k:?} is not {PREFIX}/<hub id>/<32 hex>");
        let raw = s3.get(BUCKET, &k);
        assert!(raw.starts_with(b"age-encryption.org/v1\n"), "{k} is not an age v1 file");
        let plain = age_decrypt(key, &raw);
        if plain.first() == Some(&b'{') {
            let text = String::from_utf8(plain).unwrap_or_else(|_| panic!("{k}: index is not UTF-8"));
            assert!(text.ends_with('\n'));
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{k}: {e}: {line:?}"));
                for f in ["id", "camera", "start", "end", "bytes"] {
                    assert!(!v[f].is_null(), "{k}: index line without {f}: {line}");
                }
                b.lines.push((k.clone(), v));
            }
        } else {
            let f = scratch.join(format!("{}.mp4", k.rsplit('/').next().unwrap()));
            std::fs::write(&f, &plain).unwrap();
            assert!(plays(&f), "{k}: the decrypted object does not play as MP4");
            b.media.push(k.rsplit('/').next().unwrap().to_string());
        }
        b.raw.push((k, raw));
    }
    b
}

/// No index entry twice, within one index object or across them.
fn assert_each_entry_once(b: &Bucket) {
    let mut ids: Vec<&str> = b.lines.iter().map(|(_, v)| v["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "an index entry appears twice");
}

/// An S3 server with a bucket, the owner's key, and one camera moving during `motion`.
struct Rig {
    tmp: tempfile::TempDir,
    s3: S3,
    key: PathBuf,
    recipient: String,
    /// When the camera started (its motion spans count from here).
    t0: i64,
    cam: Cam,
}

impl Rig {
    fn new(motion: &str) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let s3 = S3::start();
        s3.create_bucket(BUCKET);
        let (key, recipient) = owner_key(tmp.path());
        let t0 = now_ms();
        let cam = camsim(&["--motion", motion]);
        Rig { tmp, s3, key, recipient, t0, cam }
    }

    /// The hub recording events of the camera, relaying to the bucket.
    fn hub(&self, pre_post_roll: u32) -> Hub {
        Hub::start(
            self.tmp.path(),
            &format!(
                "[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = {pre_post_roll}\npost_roll_seconds = {pre_post_roll}\n{}{}",
                cameras_toml(&[self.cam.port]),
                cloud_toml(&self.s3, &self.recipient)
            ),
        )
    }
}

fn status(hub: &Hub, cookie: &str) -> serde_json::Value {
    hub.get_json("/api/cloud", cookie)
}

fn cli(args: &[&str], key: &Path, s3: &S3) -> Output {
    Command::new(HUB)
        .arg("cloud")
        .args(args)
        .args(["--store", &format!("s3://{BUCKET}/{PREFIX}"), "--endpoint", &s3.endpoint(), "--identity"])
        .arg(key)
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .output()
        .unwrap()
}

const CAM_NAME: &str = "Betty's Room q7v3";
const PAIRED_NAME: &str = "Nursery Cam k2p9";
const OWNER: &str = "betty.canary.x8f@example.org";
const MODEL: &str = "CanaryCam-M0d3l-77";
const SSID: &str = "Canary WiFi s5sid";
const CODE: &str = "24681357";

#[test]
fn only_ciphertext_leaves_and_the_owner_reads_it_without_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let (key, recipient) = owner_key(tmp.path());
    let a = camsim(&["--motion", "10-15"]);
    let cams = format!("[[camera]]\nname = \"{CAM_NAME}\"\nurl = \"rtsp://127.0.0.1:{}/main\"\n", a.port);
    let mut hub = Hub::start(
        tmp.path(),
        &format!(
            "[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 3\npost_roll_seconds = 3\n{cams}{}",
            cloud_toml(&s3, &recipient)
        ),
    );
    hub.add_user(OWNER, "owner", PASSWORD);
    let cookie = hub.login(OWNER, PASSWORD).1.unwrap().0;
    let id = hub.hub_id.clone();
    assert_eq!(status(&hub, &cookie)["enabled"], true);

    // A paired camera whose name, model and Wi-Fi network are all canaries too.
    let hub_addr = format!("127.0.0.1:{}", hub.mqtt_tls);
    let fp = hub.fingerprint.clone();
    let (_b, lines) = camsim_lines(&[
        "--pair",
        "--hub",
        &hub_addr,
        "--hub-fp",
        &fp,
        "--device-id",
        "cam-canary",
        "--setup-code",
        CODE,
        "--name",
        PAIRED_NAME,
        "--model",
        MODEL,
        "--ssid",
        SSID,
        "--motion",
        "8-13",
    ]);
    wait_until("the pairing request", Duration::from_secs(15), || {
        hub.get_json("/api/pairing", &cookie)["items"].as_array().unwrap().iter().any(|r| r["device_id"] == "cam-canary")
    });
    let (st, body) = hub.send_json("POST", "/api/pairing/cam-canary", &cookie, &serde_json::json!({ "setup_code": CODE }));
    assert_eq!(st, 200, "{body}");
    wait_line(&lines, "camsim paired cam-canary", Duration::from_secs(10));
    // The hub has the canaries: the model from the request, the SSID from the state.
    wait_until("the paired device's state", Duration::from_secs(15), || {
        let d = hub.get_json("/api/devices", &cookie).to_string();
        d.contains(MODEL) && d.contains(SSID)
    });

    // Both cameras move, their events end, and everything reaches the bucket.
    wait_until("an event with a clip from each camera", Duration::from_secs(60), || {
        let evs = clipped_events(&hub, &cookie);
        evs.iter().any(|e| e.1 == 1) && evs.iter().any(|e| e.1 == 2) && open_events(&hub, &cookie).is_empty()
    });
    wait_until("the upload queue drained", Duration::from_secs(30), || status(&hub, &cookie)["queue_length"] == 0);
    let st = status(&hub, &cookie);
    assert!(st["uploaded"].as_u64().unwrap() >= 4, "{st}");
    assert!(st["last_success"].is_string() && st["reachable"] == true, "{st}");
    let metrics = hub.get("/metrics", Some(&cookie)).2;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("homehub_cloud_queue_length 0"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("homehub_cloud_last_success_timestamp_seconds ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Format: every object is age, opens with the owner's key and is valid inside.
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let bucket = inspect(&s3, &key, &id, &scratch);
    let events = clipped_events(&hub, &cookie);
    let clips: Vec<&serde_json::Value> = bucket.lines.iter().map(|(_, v)| v).filter(|v| v["kind"] == "clip").collect();
    for (event, camera, bytes) in &events {
        let ev = format!("{id}/{event}");
        let mine: Vec<_> = clips.iter().filter(|v| v["event"] == ev.as_str()).collect();
        assert_eq!(mine.len(), 1, "event {event}: clip entries {mine:?}");
        assert_eq!(mine[0]["bytes"].as_i64(), Some(*bytes));
        assert_eq!(mine[0]["camera"], if *camera == 1 { CAM_NAME } else { PAIRED_NAME });
    }
    let pieces = bucket.lines.iter().filter(|(_, v)| v["kind"] == "piece").count();
    assert!(pieces >= 2 * events.len(), "{pieces} pieces for {} events", events.len());
    for (_, v) in &bucket.lines {
        assert!(bucket.media.contains(&v["id"].as_str().unwrap().to_string()), "index entry without its object: {v}");
    }
    assert_eq!(bucket.media.len(), bucket.lines.len(), "every MP4 object is in the index once");

    // The canaries are really in what the hub knows (so their absence below means
    // something): the index, decrypted, names both cameras.
    let canaries = [CAM_NAME, PAIRED_NAME, OWNER, MODEL, SSID, "Betty's Room"];
    // Nothing that names a person, camera, network or device is in any object, nor in
    // anything the hub sent the S3 server (keys, headers, bodies).
    for (k, raw) in &bucket.raw {
        s3::assert_no_canary(k, raw, &canaries);
    }
    let sent = s3.client_sent();
    assert!(sent.windows(21).any(|w| w == b"age-encryption.org/v1"), "the request log holds the bodies");
    assert!(sent.windows(id.len()).any(|w| w == id.as_bytes()), "the request log holds the keys");
    s3::assert_no_canary("the hub's requests to S3", &sent, &canaries);
    for r in s3.requests() {
        assert!(
            !r.headers.iter().any(|(h, _)| h.to_ascii_lowercase().starts_with("x-amz-meta-")),
            "metadata header in {} {}",
            r.method,
            r.target
        );
        if r.method == "PUT" {
            assert_eq!(r.header("content-type"), Some("application/octet-stream"), "{} {}", r.method, r.target);
        }
    }

    // The hub is gone — stopped and its data deleted. The owner still lists and opens.
    assert!(hub.proc.as_mut().unwrap().term().success());
    std::fs::remove_dir_all(&hub.dir).unwrap();
    let out = cli(&["list", "--json"], &key, &s3);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let listed_clips: Vec<_> = listed.iter().filter(|v| v["kind"] == "clip").collect();
    assert_eq!(listed_clips.len(), events.len(), "{listed:#?}");
    let out = cli(&["list"], &key, &s3);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(CAM_NAME) && table.contains(PAIRED_NAME), "{table}");
    let clip = listed_clips.iter().find(|v| v["camera"] == CAM_NAME).unwrap();
    let mp4 = tmp.path().join("out.mp4");
    let out = cli(&["get", clip["id"].as_str().unwrap(), "-o", mp4.to_str().unwrap()], &key, &s3);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(plays(&mp4), "cloud get wrote an MP4 that does not play");
    let secs = ffprobe_duration(&mp4).unwrap();
    assert!(secs >= 5.0, "the clip is {secs} s long");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&mp4).unwrap().permissions().mode() & 0o777, 0o600);
    // Another key opens nothing, and says so; a bad id is a clear error.
    let (other, _) = owner_key(&tmp.path().join("scratch"));
    let out = cli(&["list"], &other, &s3);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("objects this identity cannot open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["get", "nonsense", "-o", "/dev/null"], &key, &s3);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 hex digits"));
    // The owner's reads sent no canary either.
    s3::assert_no_canary("all requests to S3", &s3.client_sent(), &canaries);
}

#[test]
fn a_hub_killed_mid_event_has_already_sent_all_but_the_last_seconds() {
    let rig = Rig::new("8-38");
    let (tmp, s3, key, t0) = (&rig.tmp, &rig.s3, &rig.key, rig.t0);
    let mut hub = rig.hub(3);
    let id = hub.hub_id.clone();
    let cookie = hub.session("owner");
    assert!(now_ms() < t0 + 7_000, "the hub was not up well before the movement began");
    // SIGKILL 10 s into the 30 s movement.
    let kill_at = t0 + 18_000;
    // Pacing: the scripted kill, at a point in the movement.
    std::thread::sleep(Duration::from_millis((kill_at - now_ms()).max(0) as u64));
    let open = open_events(&hub, &cookie);
    hub.proc.as_mut().unwrap().kill9();
    let killed = now_ms();
    assert_eq!(open.len(), 1, "the event was going on");

    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let bucket = inspect(s3, key, &id, &scratch);
    let mut pieces: Vec<&serde_json::Value> = bucket.lines.iter().map(|(_, v)| v).filter(|v| v["kind"] == "piece").collect();
    pieces.sort_by_key(|v| v["seq"].as_u64());
    assert!(!pieces.is_empty(), "no piece reached the bucket");
    let ms = |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis();
    let last_end = pieces.iter().map(|p| ms(&p["end"])).max().unwrap();
    assert!(last_end >= killed - 5_000, "footage in the bucket ends {} ms before the kill", killed - last_end);
    eprintln!("hub loss: {} pieces in the bucket; footage ends {} ms before the kill", pieces.len(), killed - last_end);
    // The pieces are the event from its start, in order, none missing, none over 4 s.
    for (i, p) in pieces.iter().enumerate() {
        assert_eq!(p["seq"].as_u64(), Some(i as u64), "pieces: {pieces:#?}");
        let len = ms(&p["end"]) - ms(&p["start"]);
        assert!((500..=4_000).contains(&len), "piece {i} is {len} ms");
        if i > 0 {
            assert_eq!(ms(&p["start"]), ms(&pieces[i - 1]["end"]), "a gap before piece {i}");
        }
    }
    assert!(ms(&pieces[0]["start"]) <= t0 + 8_000, "the first piece starts after the movement did (no pre-roll)");
    // Each piece plays on its own (checked in inspect), and the owner's CLI sees them.
    let out = cli(&["list", "--json"], key, s3);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), pieces.len());

    // The hub comes back: the event cut short is closed from its partial clip, and the
    // queue (pieces not yet sent) and that clip go up; nothing twice.
    let killed_event = open[0];
    hub.restart();
    wait_until("the recovered clip uploaded", Duration::from_secs(30), || {
        clipped_events(&hub, &cookie).iter().any(|e| e.0 == killed_event) && status(&hub, &cookie)["queue_length"] == 0
    });
    let after = inspect(s3, key, &id, &scratch);
    let ev = format!("{id}/{killed_event}");
    let clip_entries = after.lines.iter().filter(|(_, v)| v["kind"] == "clip" && v["event"] == ev.as_str()).count();
    assert_eq!(clip_entries, 1, "the recovered clip of the killed event");
    assert_each_entry_once(&after);
    assert!(after.lines.len() > bucket.lines.len());
    // Its piece files are gone: sent and deleted, or (the one cut by the kill) swept.
    let left: Vec<String> = std::fs::read_dir(hub.dir.join("cloud/pieces"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&format!("{killed_event}-")))
        .collect();
    assert!(left.is_empty(), "piece files of the killed event left behind: {left:?}");
}

#[test]
fn a_two_minute_outage_loses_and_duplicates_nothing() {
    let rig = Rig::new("8-11,27-30,45-48,80-83,110-113");
    let (tmp, s3, key, t0) = (&rig.tmp, &rig.s3, &rig.key, rig.t0);
    let hub = rig.hub(2);
    hub.add_user(EMAIL, "owner", PASSWORD);
    let cookie = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    let id = hub.hub_id.clone();
    // Pacing: the scripted outage, s seconds after the camera started.
    let at = |s: i64| std::thread::sleep(Duration::from_millis((t0 + s * 1000 - now_ms()).max(0) as u64));

    // The first event goes up while the cloud is there.
    wait_until("the first event uploaded", Duration::from_secs(25), || {
        clipped_events(&hub, &cookie).len() == 1 && status(&hub, &cookie)["queue_length"] == 0
    });
    at(20);
    // Two minutes without the S3 server: first it refuses connections, then it hangs.
    s3.refuse(true);
    let outage = Instant::now();
    at(80);
    let st = status(&hub, &cookie);
    assert!(st["queue_length"].as_u64().unwrap() >= 2 && st["bytes_pending"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["reachable"], false, "{st}");
    assert!(st["last_error"].is_string(), "{st}");
    let metrics = String::from_utf8_lossy(&hub.get("/metrics", Some(&cookie)).2).to_string();
    assert!(metrics.contains("homehub_cloud_reachable 0"), "{metrics}");
    s3.refuse(false);
    s3.pause();
    at(140);
    s3.resume();
    assert!(outage.elapsed() >= Duration::from_secs(119));
    let events = clipped_events(&hub, &cookie);
    assert_eq!(events.len(), 5, "events: {events:?}\n{}", hub.log_text());

    wait_until("the queue drained after the outage", Duration::from_secs(90), || status(&hub, &cookie)["queue_length"] == 0);
    let st = status(&hub, &cookie);
    assert_eq!(st["failed"], 0, "{st}");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let bucket = inspect(s3, key, &id, &scratch);
    for (event, _, bytes) in &events {
        let ev = format!("{id}/{event}");
        let clips: Vec<_> = bucket.lines.iter().filter(|(_, v)| v["kind"] == "clip" && v["event"] == ev.as_str()).collect();
        assert_eq!(clips.len(), 1, "event {event}: {clips:?}");
        assert_eq!(clips[0].1["bytes"].as_i64(), Some(*bytes));
    }
    // Exactly once: no entry twice, in one index object or across them.
    assert_each_entry_once(&bucket);
    assert_eq!(bucket.media.len(), bucket.lines.len(), "objects without an index entry, or the other way round");
}

#[test]
fn big_objects_go_up_in_parts_and_come_back_whole() {
    use homehub::cloud::remote::{Remote, SINGLE_PUT_MAX, Target};
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let remote = Remote::open(&Target {
        store: format!("s3://{BUCKET}/{PREFIX}"),
        endpoint: s3.endpoint(),
        region: s3::REGION.into(),
        access_key_id: s3::ACCESS_KEY.into(),
        secret_access_key: s3::SECRET_KEY.into(),
    })
    .unwrap();
    let big = tmp.path().join("big");
    let data: Vec<u8> = (0..SINGLE_PUT_MAX + 3 * 1024 * 1024 + 7).map(|i| ((i * 2654435761) >> 13) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let at = remote.object("hub", "0123456789abcdef0123456789abcdef");
    let mut reported = 0u64;
    rt.block_on(remote.put_file(&at, &big, async |n| reported += n)).unwrap();
    assert_eq!(reported, data.len() as u64);
    assert!(s3.get(BUCKET, &format!("{PREFIX}/hub/0123456789abcdef0123456789abcdef")) == data, "the object differs");
    let parts = s3.requests().iter().filter(|r| r.method == "PUT" && r.target.contains("partNumber=")).count();
    assert!(parts >= 3, "{parts} parts");
    let back = tmp.path().join("back");
    assert_eq!(rt.block_on(remote.get_to_file(&at, &back)).unwrap(), data.len() as u64);
    // Without the server: a clear error naming the store, not a hang.
    drop(s3);
    let e = rt.block_on(remote.put_bytes(&at, vec![1, 2, 3])).unwrap_err();
    assert!(e.to_string().contains(&format!("s3://{BUCKET}/{PREFIX}")), "{e}");
}

#[test]
fn what_leaves_this_house_is_read_from_the_bucket_itself() {
    let rig = Rig::new("6-10");
    let hub = rig.hub(1);
    let cookie = hub.session("owner");
    wait_until("the event's clip uploaded", Duration::from_secs(60), || {
        let ended = hub.events(&cookie).iter().any(|e| !e["end"].is_null() && e["clip_url"].is_string());
        let s = status(&hub, &cookie);
        ended && s["uploaded"].as_u64() >= Some(2) && s["queue_length"] == 0
    });
    let e = hub.get_json("/api/cloud/exposure", &cookie);
    let mine: Vec<(String, u64)> =
        rig.s3.list(BUCKET).into_iter().filter(|(k, _)| k.starts_with(&format!("{PREFIX}/{}/", hub.hub_id))).collect();
    assert_eq!(e["enabled"], true);
    assert_eq!(e["objects"].as_u64(), Some(mine.len() as u64), "the page counts what the bucket holds: {e}");
    let recent: Vec<(String, u64)> = e["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_string(), o["bytes"].as_u64().unwrap()))
        .collect();
    assert_eq!(recent.len(), mine.len().min(50));
    for o in &recent {
        assert!(mine.contains(o), "{o:?} is not what the bucket lists: {mine:?}");
    }
    assert_eq!(e["bytes"].as_u64(), Some(mine.iter().map(|o| o.1).sum::<u64>()));
    assert_eq!(e["hub_id"], hub.hub_id.as_str());
    assert_eq!(e["recipients"], serde_json::json!([rig.recipient]));
    assert!(e["error"].is_null(), "{e}");
    // Nothing that names anything: the store's credentials are not in it either.
    let text = e.to_string();
    assert!(!text.contains("Cam 0") && !text.contains(s3::SECRET_KEY), "{text}");
    // The hub's own figures, for the owner only.
    let insight = hub.get_json("/api/insight?days=3", &cookie);
    assert_eq!(insight["days"].as_array().unwrap().len(), 3);
    let today: i64 = insight["motion"][0]["per_day"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).sum();
    assert!(today >= 1, "the event is counted: {insight}");
    assert_eq!(hub.get("/api/insight?days=61", Some(&cookie)).0, 400);
}

#[test]
fn with_no_cloud_the_owner_is_told_nothing_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(tmp.path(), "");
    let cookie = hub.session("owner");
    assert_eq!(hub.get_json("/api/cloud/exposure", &cookie), serde_json::json!({ "enabled": false }));
}

/// Whether Debian's age opens `data` with the identity in `key`.
fn age_opens(key: &Path, data: &[u8]) -> bool {
    use std::io::Write;
    let mut child = Command::new("age")
        .args(["-d", "-i"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("age");
    let _ = child.stdin.take().unwrap().write_all(data);
    child.wait().unwrap().success()
}

#[test]
fn the_owner_changes_who_can_open_new_clips_and_tests_the_store() {
    // One movement before the change of recipients, one after.
    let rig = Rig::new("6-10,34-38");
    let mut hub = rig.hub(1);
    let cookie = hub.session("owner");
    let r = hub.get_json("/api/cloud/recipients", &cookie);
    assert_eq!((r["recipients"].clone(), r["from"].as_str()), (serde_json::json!([rig.recipient]), Some("config")), "{r}");

    // The store test writes and deletes one probe; nothing stays behind.
    let before = rig.s3.list(BUCKET).len();
    let (st, t) = hub.send_json("POST", "/api/cloud/test", &cookie, &serde_json::json!({}));
    assert_eq!((st, t["ok"].as_bool()), (200, Some(true)), "{t}");
    assert_eq!(rig.s3.list(BUCKET).len(), before, "the probe was deleted");
    // What went up, the probe included, is age ciphertext and nothing else.
    let puts: Vec<_> = rig.s3.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert!(!puts.is_empty(), "the probe went through the S3 server");
    for r in &puts {
        assert!(r.body.starts_with(b"age-encryption.org/v1\n"), "PUT {} is not an age file", r.target);
    }

    // Public keys only, at least one.
    let new_dir = rig.tmp.path().join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let (new_key, new_recipient) = owner_key(&new_dir);
    let secret =
        std::fs::read_to_string(&new_key).unwrap().lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap().to_string();
    for (bad, why) in [
        (serde_json::json!([secret]), "secret key"),
        (serde_json::json!([]), "at least one"),
        (serde_json::json!(["age1nope"]), "recipient"),
    ] {
        let (st, b) = hub.send_json("PUT", "/api/cloud/recipients", &cookie, &serde_json::json!({ "recipients": bad }));
        assert_eq!(st, 400, "{b}");
        assert!(b["error"].as_str().unwrap().contains(why), "{b}");
    }
    let first = poll(Duration::from_secs(30), || {
        hub.events(&cookie).into_iter().find(|e| !e["end"].is_null() && e["clip_url"].is_string())
    })
    .expect("the first event's clip");
    // Sealing happens at upload: the first event's objects go up before the change.
    wait_until("the first clip uploaded", Duration::from_secs(30), || {
        let s = status(&hub, &cookie);
        s["queue_length"] == 0 && s["uploaded"].as_u64() >= Some(2)
    });
    let (st, r) = hub.send_json("PUT", "/api/cloud/recipients", &cookie, &serde_json::json!({ "recipients": [new_recipient] }));
    assert_eq!((st, r["from"].as_str()), (200, Some("hub")), "{r}");
    let changed_at = now_ms();

    // The clip of the movement after the change opens with the new key only.
    let second = poll(Duration::from_secs(60), || {
        hub.events(&cookie).into_iter().find(|e| e["id"] != first["id"] && !e["end"].is_null() && e["clip_url"].is_string())
    })
    .expect("the second event's clip");
    assert!(api_ms(&second["start"]) > changed_at, "the second movement came after the change");
    wait_until("the second clip uploaded", Duration::from_secs(30), || status(&hub, &cookie)["queue_length"] == 0);
    let objects: Vec<Vec<u8>> = rig.s3.list(BUCKET).into_iter().map(|(k, _)| rig.s3.get(BUCKET, &k)).collect();
    let (old_ones, new_ones) =
        (objects.iter().filter(|o| age_opens(&rig.key, o)).count(), objects.iter().filter(|o| age_opens(&new_key, o)).count());
    assert!(old_ones >= 2 && new_ones >= 2, "old key opens {old_ones}, new key {new_ones} of {}", objects.len());
    assert_eq!(old_ones + new_ones, objects.len(), "every object opens with exactly one of the two keys");
    // The list outlives a restart; the audit names both changes.
    hub.proc.as_mut().unwrap().term();
    hub.restart();
    let cookie = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    let r = hub.get_json("/api/cloud/recipients", &cookie);
    assert_eq!((r["recipients"].clone(), r["from"].as_str()), (serde_json::json!([new_recipient]), Some("hub")), "{r}");
    let actions: Vec<String> = hub.get_json("/api/audit?action=cloud", &cookie)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert!(actions.contains(&"cloud.recipients_changed".into()) && actions.contains(&"cloud.tested".into()), "{actions:?}");

    // With the store refusing, the test says so.
    rig.s3.refuse(true);
    let (st, t) = hub.send_json("POST", "/api/cloud/test", &cookie, &serde_json::json!({}));
    assert_eq!(st, 502, "{t}");
    assert!(!t["error"].as_str().unwrap().is_empty());
    rig.s3.refuse(false);
}

/// The store settings the page sends.
fn store_body(s3: &S3, endpoint: &str, secret: Option<&str>) -> serde_json::Value {
    let _ = s3;
    serde_json::json!({
        "store": format!("s3://{BUCKET}/{PREFIX}"),
        "endpoint": endpoint,
        "region": "us-east-1",
        "access_key_id": s3::ACCESS_KEY,
        "secret_access_key": secret,
    })
}

#[test]
fn the_owner_sets_up_the_cloud_from_the_browser_and_it_runs_without_a_restart() {
    // No [cloud] in the config: the owner sets it all through the API the page uses.
    let rig = Rig::new("12-16");
    let mut hub = Hub::start(
        rig.tmp.path(),
        &format!(
            "[recording]\nmode = \"events\"\n[motion]\npre_roll_seconds = 1\npost_roll_seconds = 1\n{}",
            cameras_toml(&[rig.cam.port])
        ),
    );
    let cookie = hub.session("owner");
    assert_eq!(status(&hub, &cookie)["enabled"], false);
    let v = hub.get_json("/api/cloud/settings", &cookie);
    assert_eq!(
        (v["from"].as_str(), v["active"].as_bool(), v["secret_set"].as_bool()),
        (Some("none"), Some(false), Some(false)),
        "{v}"
    );
    let r = hub.get_json("/api/cloud/recipients", &cookie);
    assert_eq!((r["recipients"].clone(), r["from"].as_str()), (serde_json::json!([]), Some("none")), "{r}");

    // A store without anyone to open the clips is refused; so are broken fields.
    let good = store_body(&rig.s3, &rig.s3.endpoint(), Some(s3::SECRET_KEY));
    let (st, b) = hub.send_json("PUT", "/api/cloud/settings", &cookie, &good);
    assert_eq!(st, 409, "{b}");
    assert!(b["error"].as_str().unwrap().contains("recipients"), "{b}");
    let (st, _) = hub.send_json("PUT", "/api/cloud/recipients", &cookie, &serde_json::json!({ "recipients": [rig.recipient] }));
    assert_eq!(st, 200);
    for (field, bad) in [
        ("endpoint", serde_json::json!("ftp://example")),
        ("store", serde_json::json!("gs://nope")),
        ("region", serde_json::json!("x".repeat(65))),
    ] {
        let mut body = good.clone();
        body[field] = bad;
        let (st, b) = hub.send_json("PUT", "/api/cloud/settings", &cookie, &body);
        assert_eq!(st, 400, "{field}: {b}");
        assert!(b["error"].as_str().unwrap().contains(field), "{field}: {b}");
    }
    // Testing settings before saving them: the real server, then a port nobody listens on.
    let (st, t) = hub.send_json("POST", "/api/cloud/test", &cookie, &good);
    assert_eq!((st, t["ok"].as_bool()), (200, Some(true)), "{t}");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (st, t) =
        hub.send_json("POST", "/api/cloud/test", &cookie, &store_body(&rig.s3, &format!("http://127.0.0.1:{dead}"), Some("x")));
    assert_eq!(st, 502, "{t}");
    assert_eq!(hub.get_json("/api/cloud/settings", &cookie)["active"], false, "a test saves nothing");

    // Saved: on at once, the secret kept sealed and never shown.
    let (st, v) = hub.send_json("PUT", "/api/cloud/settings", &cookie, &good);
    assert_eq!(
        (st, v["active"].as_bool(), v["from"].as_str(), v["secret_set"].as_bool()),
        (200, Some(true), Some("hub"), Some(true)),
        "{v}"
    );
    assert!(!v.to_string().contains(s3::SECRET_KEY), "the secret is never answered: {v}");
    let ev = poll(Duration::from_secs(60), || clipped_events(&hub, &cookie).into_iter().next()).expect("an event with a clip");
    wait_until("the clip in the bucket", Duration::from_secs(30), || {
        let s = status(&hub, &cookie);
        s["queue_length"] == 0 && s["uploaded"].as_u64() >= Some(2)
    });
    let s = status(&hub, &cookie);
    assert_eq!((s["enabled"].as_bool(), s["store"].as_str()), (Some(true), Some(&*format!("s3://{BUCKET}/{PREFIX}"))), "{s}");
    assert!(s["last_upload"]["bytes"].as_u64() > Some(0) && s["last_upload"]["at"].is_string(), "{s}");
    let b = inspect(&rig.s3, &rig.key, &hub.hub_id, rig.tmp.path());
    assert!(b.lines.iter().any(|(_, l)| l["kind"] == "clip"), "the event {ev:?} reached the bucket as a clip");
    // At rest: not in the database, the log or any file of the data dir.
    assert!(!hub.log_text().contains(s3::SECRET_KEY));
    let grep = Command::new("grep").args(["-rqF", s3::SECRET_KEY]).arg(&hub.dir).status().unwrap();
    assert!(!grep.success(), "the store's secret is in the hub's data dir in plaintext");

    // The away page beside the clips: an HTML page the bucket serves, the hub's own copy.
    let (st, a) = hub.send_json("POST", "/api/cloud/away", &cookie, &serde_json::json!({}));
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["key"], format!("{PREFIX}/homehub-away.html"));
    let address = format!("{}/{BUCKET}/{PREFIX}/homehub-away.html", rig.s3.endpoint());
    assert_eq!(a["address"], address.as_str(), "{a}");
    assert!(a["url"].as_str().unwrap().starts_with(&format!("{address}?X-Amz-")), "a presigned link: {a}");
    let (code, headers, page) = hub.get("/api/cloud/away.html", Some(&cookie));
    assert_eq!(code, 200);
    assert!(headers.contains("homehub-away.html"), "{headers}");
    assert!(page.starts_with(b"<!doctype html>") || page.starts_with(b"<!DOCTYPE html>"), "an HTML page");
    assert_eq!(rig.s3.get(BUCKET, &format!("{PREFIX}/homehub-away.html")), page);
    assert_eq!(hub.get("/api/cloud/away.html", None).0, 401);

    // Kept across a restart (the secret opens with the hub's key); then switched off.
    hub.proc.as_mut().unwrap().term();
    hub.restart();
    let cookie = hub.login(EMAIL, PASSWORD).1.unwrap().0;
    let v = hub.get_json("/api/cloud/settings", &cookie);
    assert_eq!((v["active"].as_bool(), v["from"].as_str()), (Some(true), Some("hub")), "{v}");
    let (st, t) = hub.send_json("POST", "/api/cloud/test", &cookie, &serde_json::json!({}));
    assert_eq!(st, 200, "the kept secret still signs: {t}");
    let mut off = good.clone();
    off["store"] = "".into();
    off["secret_access_key"] = serde_json::Value::Null;
    let (st, v) = hub.send_json("PUT", "/api/cloud/settings", &cookie, &off);
    assert_eq!((st, v["active"].as_bool()), (200, Some(false)), "{v}");
    assert_eq!(status(&hub, &cookie)["enabled"], false);
    assert_eq!(hub.get_json("/api/cloud/exposure", &cookie), serde_json::json!({ "enabled": false }));
    let actions: Vec<String> = hub.get_json("/api/audit?action=cloud", &cookie)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.iter().filter(|a| *a == "cloud.settings_changed").count() == 2
            && actions.contains(&"cloud.away_page_uploaded".into()),
        "{actions:?}"
    );
}
