//! `homehub metrics-token [--revoke]`: the one Prometheus scrape token. A new one is
//! random, printed once and stored only as its SHA-256; it replaces any other at once
//! (the hub reads it at each scrape).

use crate::config::Config;
use crate::error::Result;
use crate::web::auth;

use super::open_store;

/// Makes a new scrape token (replacing the old one) and prints it; with `revoke`, removes
/// the token so that only sessions may scrape.
pub fn metrics_token(cfg: &Config, revoke: bool) -> Result<()> {
    let store = open_store(&cfg.data_dir)?;
    let now = crate::clock::now_ms();
    if revoke {
        let gone = store.call_blocking(move |db| {
            let gone = db.delete_metrics_token()?;
            if gone {
                db.audit("cli", "metrics_token.revoke", "", now)?;
            }
            Ok(gone)
        })?;
        if gone {
            println!("scrape token removed; /metrics now answers signed-in members and the owner only");
        } else {
            println!("there was no scrape token");
        }
        return Ok(());
    }
    let (token, hash) = auth::new_token();
    let replaced = store.call_blocking(move |db| {
        let replaced = db.metrics_token_hash()?.is_some();
        db.set_metrics_token(&hash, now)?;
        db.audit("cli", "metrics_token.new", if replaced { "replaced the old token" } else { "" }, now)?;
        Ok(replaced)
    })?;
    println!("{token}");
    eprintln!(
        "(shown once; scrape with the header \"Authorization: Bearer <token>\"{})",
        if replaced { "; the old token no longer works" } else { "" }
    );
    Ok(())
}
