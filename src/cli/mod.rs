//! The admin subcommands: `user add`, `mqtt-user add|remove`, `device add`, `discover`,
//! `doctor`, `demo`, `metrics-token`.
//!
//! Owns: what each command prints and how it reads its input (passwords from stdin,
//! never argv). May not touch: SQL or GStreamer directly; it goes through `store`,
//! `camera` and `hub` like everyone else.

pub mod cloud;
mod demo;
mod doctor;
mod metrics_token;
mod mqtt;

pub use demo::{DemoArgs, OWNER_EMAIL, demo};
pub use doctor::doctor;
pub use metrics_token::metrics_token;
pub use mqtt::{device_add, mqtt_user_add, mqtt_user_remove};

use std::io::BufRead;
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{self, Role, Store};
use crate::web::auth;

/// Resolves at the first SIGTERM or SIGINT, the hub's cue to stop in order; from then on
/// a second one exits at once (status 130), for a tear-down that hangs.
pub async fn until_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT: stop the hub with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("homehub: second signal, exiting now");
        std::process::exit(130);
    });
}

/// `homehub user add EMAIL --role R`: the password is the first line of stdin.
pub fn user_add(cfg: &Config, email: &str, role: &str) -> Result<()> {
    let role =
        Role::parse(role).ok_or_else(|| Error::invalid(format!("--role: expected owner, member or viewer, got {role:?}")))?;
    let email = email.trim();
    if !email.contains('@') || email.len() > 254 || email.contains(char::is_whitespace) {
        return Err(Error::invalid(format!("EMAIL: not an email address: {email:?}")));
    }
    let password = read_password()?;
    auth::check_new_password(&password)?;
    let store = open_store(&cfg.data_dir)?;
    let hash = auth::hash_password(&password)?;
    let (e, r, now) = (email.to_string(), role, crate::clock::now_ms());
    store.call_blocking(move |db| {
        db.add_user(&e, r, &hash, now)?;
        db.audit("cli", "user.add", &format!("{e} as {}", r.as_str()), now)
    })?;
    println!("added {email} as {}", role.as_str());
    Ok(())
}

/// `homehub discover`: the hubs mDNS finds on one interface, one line each.
pub fn discover(interface: &str, timeout: std::time::Duration) -> Result<()> {
    let found = crate::mdns::browse(interface, crate::mdns::HUB_SERVICE, timeout)?;
    if found.is_empty() {
        eprintln!("no hub answered on {interface} within {} s", timeout.as_secs());
    }
    for (instance, addrs, port, txt) in found {
        let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let get = |k: &str| txt.get(k).map(String::as_str).unwrap_or("?").to_string();
        println!("{instance} addresses={} web={port} mqtt={} id={} fp={}", addrs.join(","), get("mqtt"), get("id"), get("fp"));
    }
    Ok(())
}

fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if std::io::IsTerminal::is_terminal(&stdin) {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| Error::invalid(format!("reading password from stdin: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(Error::invalid("no password on stdin (give it as the first line)"));
    }
    Ok(pw)
}

/// Opens the database for an admin command. It does not take the data-dir lock: that
/// keeps two hubs apart, while SQLite itself arbitrates a command beside a running hub.
pub fn open_store(data_dir: &Path) -> Result<Store> {
    store::prepare_data_dir(data_dir)?;
    Store::open(data_dir)
}
