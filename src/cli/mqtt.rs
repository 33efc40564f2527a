//! `homehub mqtt-user add|remove` and `homehub device add`: broker logins made by hand.
//!
//! Passwords are made here (32 random bytes, base64url), printed once, and stored only
//! as SHA-256 digests.

use crate::config::Config;
use crate::devices::auth::digest;
use crate::error::{Error, ErrorKind, Result};
use crate::pairing;
use crate::store::NewDevice;

use super::open_store;

fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(Error::invalid(format!(
            "NAME: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit; got {name:?}"
        )));
    }
    if name == pairing::PAIR_USERNAME || name.starts_with("homehub") {
        return Err(Error::invalid(format!("NAME: {name:?} is reserved")));
    }
    Ok(())
}

/// Adds a broker login for an integration (Home Assistant and the like).
pub fn mqtt_user_add(cfg: &Config, name: &str, read_only: bool) -> Result<()> {
    check_user_name(name)?;
    let store = open_store(&cfg.data_dir)?;
    let password = pairing::new_password();
    let hash = digest(password.as_bytes());
    let n = name.to_string();
    store.call_blocking(move |db| {
        if db.device(&n)?.is_some() {
            return Err(Error::new(ErrorKind::Conflict, format!("NAME: a device is called {n:?} already")));
        }
        let now = crate::clock::now_ms();
        db.add_mqtt_user(&n, &hash, read_only, now)?;
        db.audit("cli", "mqtt_user.add", &format!("{n}{}", if read_only { " (read-only)" } else { "" }), now)
    })?;
    println!("username: {name}");
    println!("password: {password}");
    eprintln!("(shown once; the hub keeps only a digest)");
    Ok(())
}

/// Removes a broker login. A hub running beside this command drops the login's live
/// connections within a few seconds: it polls the `revocations` row written here.
pub fn mqtt_user_remove(cfg: &Config, name: &str) -> Result<()> {
    let store = open_store(&cfg.data_dir)?;
    let n = name.to_string();
    let gone = store.call_blocking(move |db| {
        let gone = db.delete_mqtt_user(&n)?;
        if gone {
            let now = crate::clock::now_ms();
            db.add_revocation(&n, now)?;
            db.audit("cli", "mqtt_user.remove", &n, now)?;
        }
        Ok(gone)
    })?;
    if !gone {
        return Err(Error::not_found(format!("no broker user {name:?}")));
    }
    println!("removed {name}; a running hub drops its connections within a few seconds");
    Ok(())
}

/// Provisions a device by hand (one that cannot run the pairing protocol): it gets the
/// same topics as a paired device, `homehub/dev/ID/#`.
pub fn device_add(cfg: &Config, id: &str, kind: &str) -> Result<()> {
    pairing::check_device_id(id).map_err(|e| Error::invalid(format!("ID: {e}")))?;
    if id == pairing::PAIR_USERNAME {
        return Err(Error::invalid("ID: \"pair\" is reserved"));
    }
    pairing::check_device_id(kind).map_err(|e| Error::invalid(format!("--kind: {e}")))?;
    let store = open_store(&cfg.data_dir)?;
    let password = pairing::new_password();
    let hash = digest(password.as_bytes());
    let device =
        NewDevice { id: id.to_string(), kind: kind.to_string(), model: "provisioned by hand".into(), firmware: String::new() };
    let now = crate::clock::now_ms();
    store.call_blocking(move |db| {
        if db.device_password_hash(&device.id)?.is_some() {
            return Err(Error::new(ErrorKind::Conflict, format!("ID: {} is paired already", device.id)));
        }
        if db.mqtt_user(&device.id)?.is_some() {
            return Err(Error::new(ErrorKind::Conflict, format!("ID: a broker user is called {:?}", device.id)));
        }
        db.complete_pairing(&device, &hash, now)?;
        db.audit("cli", "device.add", &device.id, now)
    })?;
    println!("username: {id}");
    println!("password: {password}");
    eprintln!("(shown once; topics homehub/dev/{id}/#)");
    Ok(())
}
