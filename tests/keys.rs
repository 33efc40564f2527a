//! `homehub keys new` against Debian's `age`: the owner's key opens what is sealed to it.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::HUB;

#[test]
fn keys_new_prints_an_identity_the_stock_age_tool_uses() {
    let out = Command::new(HUB).args(["keys", "new"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("# created: "), "{text}");
    let recipient = lines[1].strip_prefix("# public key: ").expect("public key line");
    assert!(recipient.starts_with("age1"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
    let again = String::from_utf8(Command::new(HUB).args(["keys", "new"]).output().unwrap().stdout).unwrap();
    assert_ne!(again.lines().nth(2), Some(lines[2]), "every key is new");

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("owner.key");
    std::fs::write(&key, &text).unwrap();
    let mut enc = Command::new("age").args(["-e", "-r", recipient]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    enc.stdin.take().unwrap().write_all(b"Betty's Room").unwrap();
    let sealed = enc.wait_with_output().unwrap().stdout;
    let sealed_file = dir.path().join("x.age");
    std::fs::write(&sealed_file, &sealed).unwrap();
    let dec = Command::new("age").arg("-d").arg("-i").arg(&key).arg(&sealed_file).output().unwrap();
    assert!(dec.status.success(), "{}", String::from_utf8_lossy(&dec.stderr));
    assert_eq!(dec.stdout, b"Betty's Room");
}
