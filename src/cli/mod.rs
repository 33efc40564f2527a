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
pub use doctor::{Finding, doctor, findings as doctor_findings};
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
    let role = parse_role(role)?;
    let email = auth::check_email(email).map_err(|e| Error::invalid(format!("EMAIL: {}", e.message())))?;
    let password = read_password()?;
    auth::check_new_password(&password)?;
    let store = open_store(&cfg.data_dir)?;
    let hash = auth::hash_password(&password)?;
    let (e, r, now) = (email.clone(), role, crate::clock::now_ms());
    store.call_blocking(move |db| {
        db.add_user(&e, r, &hash, now)?;
        if r == Role::Owner {
            // The hub has its owner: any setup link dies.
            db.clear_setup_tokens()?;
        }
        db.audit("cli", "user.added", &format!("{e} as {}", r.as_str()), now)
    })?;
    println!("added {email} as {}", role.as_str());
    Ok(())
}

fn parse_role(role: &str) -> Result<Role> {
    Role::parse(role).ok_or_else(|| Error::invalid(format!("ROLE: expected owner, member or viewer, got {role:?}")))
}

fn user_named(db: &mut store::Db, email: &str) -> Result<store::UserRow> {
    db.user_by_email(email.trim())?
        .ok_or_else(|| Error::new(crate::error::ErrorKind::NotFound, format!("EMAIL: no user {:?}", email.trim())))
}

/// `homehub user remove EMAIL`: their sessions, shares and codes go with them.
pub fn user_remove(cfg: &Config, email: &str) -> Result<()> {
    let store = open_store(&cfg.data_dir)?;
    let (e, now) = (email.to_string(), crate::clock::now_ms());
    let gone = store.call_blocking(move |db| {
        let u = user_named(db, &e)?;
        let gone = db.delete_user(u.id)?;
        db.audit("cli", "user.removed", &gone.email, now)?;
        Ok(gone)
    })?;
    println!("removed {} ({}); their sessions have ended", gone.email, gone.role.as_str());
    Ok(())
}

/// `homehub user set-role EMAIL ROLE`.
pub fn user_set_role(cfg: &Config, email: &str, role: &str) -> Result<()> {
    let role = parse_role(role)?;
    let store = open_store(&cfg.data_dir)?;
    let (e, now) = (email.to_string(), crate::clock::now_ms());
    let u = store.call_blocking(move |db| {
        let u = user_named(db, &e)?;
        let u = db.set_role(u.id, role)?;
        db.audit("cli", "user.role_changed", &format!("{} is now {}", u.email, role.as_str()), now)?;
        Ok(u)
    })?;
    println!("{} is now {}", u.email, u.role.as_str());
    Ok(())
}

/// `homehub user list`: one line each (email, role, two-factor).
pub fn user_list(cfg: &Config) -> Result<()> {
    let store = open_store(&cfg.data_dir)?;
    let users = store.call_blocking(|db| db.users())?;
    if users.is_empty() {
        eprintln!("no users yet: `homehub setup-link` prints the link that creates the owner");
    }
    for u in users {
        println!("{} {} 2fa={}", u.email, u.role.as_str(), if u.totp_enabled { "on" } else { "off" });
    }
    Ok(())
}

/// `homehub setup-link`: a new one-time link (valid 24 hours) while the hub has no users.
/// Needs the data dir, so only root and the service's user can run it.
pub fn setup_link(cfg: &Config) -> Result<()> {
    let store = open_store(&cfg.data_dir)?;
    let token = store.call_blocking(|db| {
        if db.user_count()? > 0 {
            return Err(Error::new(
                crate::error::ErrorKind::Conflict,
                "the hub has its owner already: sign in, or ask an owner to add you",
            ));
        }
        crate::web::people_mint_setup_token(db, crate::clock::now_ms())
    })?;
    println!("{}", crate::web::setup_url(cfg.web_listen(), &token));
    eprintln!("Open this link in a browser on your home network within 24 hours to create the hub's owner. It works once.");
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
