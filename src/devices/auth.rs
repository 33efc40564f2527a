//! Who may log in to the broker, and which topics each login may touch.
//!
//! - `pair`/`pair` with client id DEVICE_ID: publish its own pairing request, read its
//!   own pairing response, nothing else.
//! - a paired device (username = its id, password issued at pairing): `homehub/dev/<id>/#`.
//! - a broker user made by the owner (`homehub mqtt-user add`): read the hub's camera
//!   topics and Home Assistant discovery; without `--read-only` also device state and
//!   availability, and send device commands.
//!
//! Passwords are compared as SHA-256 digests in constant time.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::mqtt::{AuthFuture, Authenticator, Grants, Identity, Refusal};
use crate::pairing;
use crate::store::Store;

/// Topics the hub publishes for cameras and integrations.
pub const CAMERA_TOPICS: &str = "homehub/camera/#";
pub const STATUS_TOPIC: &str = "homehub/status";
pub const DISCOVERY_TOPICS: &str = "homeassistant/#";

pub fn digest(password: &[u8]) -> Vec<u8> {
    Sha256::digest(password).to_vec()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn pair_grants(client_id: &str) -> Grants {
    Grants {
        publish: vec![pairing::request_topic(client_id)],
        subscribe: vec![pairing::response_topic(client_id)],
        retain: vec![],
    }
}

pub fn device_grants(device_id: &str) -> Grants {
    let own = format!("homehub/dev/{device_id}/#");
    let retain = ["config", "state", "availability"].map(|t| format!("homehub/dev/{device_id}/{t}")).to_vec();
    Grants { publish: vec![own.clone()], subscribe: vec![own], retain }
}

pub fn user_grants(read_only: bool) -> Grants {
    let mut g = Grants {
        // Home Assistant announces itself here; harmless to let it.
        publish: vec!["homeassistant/status".into()],
        subscribe: vec![DISCOVERY_TOPICS.into(), CAMERA_TOPICS.into(), STATUS_TOPIC.into()],
        retain: vec!["homeassistant/status".into()],
    };
    if !read_only {
        g.subscribe.extend(["homehub/dev/+/state".into(), "homehub/dev/+/availability".into()]);
        g.publish.push("homehub/dev/+/cmd".into());
    }
    g
}

/// Checks logins against the store.
pub struct HubAuth {
    pub store: Store,
    /// Stamps a device's last connection.
    pub clock: Clock,
}

impl HubAuth {
    async fn check(&self, client_id: &str, username: &str, password: &[u8]) -> Result<Identity, Refusal> {
        if username == pairing::PAIR_USERNAME {
            if password != pairing::PAIR_PASSWORD.as_bytes() {
                return Err(Refusal::BadCredentials);
            }
            pairing::check_device_id(client_id).map_err(|_| Refusal::BadClientId)?;
            return Ok(Identity { username: username.into(), grants: pair_grants(client_id) });
        }
        let name = username.to_string();
        let given = digest(password);
        let now = self.clock.now_ms();
        let found = self
            .store
            .call(move |db| {
                if let Some(hash) = db.device_password_hash(&name)? {
                    let ok = same(&hash, &given);
                    db.count_device_connection(&name, ok, now)?;
                    return Ok(Some((ok, None)));
                }
                if db.device(&name)?.is_some() {
                    // Unpaired: its old password is refused, and counted.
                    db.count_device_connection(&name, false, now)?;
                    return Ok(Some((false, None)));
                }
                Ok(db.mqtt_user(&name)?.map(|u| (same(&u.password_hash, &given), Some(u.read_only))))
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "broker login: database");
                Refusal::Unavailable
            })?;
        match found {
            Some((true, None)) => Ok(Identity { username: username.into(), grants: device_grants(username) }),
            Some((true, Some(read_only))) => Ok(Identity { username: username.into(), grants: user_grants(read_only) }),
            _ => Err(Refusal::BadCredentials),
        }
    }
}

impl Authenticator for HubAuth {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        username: Option<&'a str>,
        password: Option<&'a [u8]>,
        peer: SocketAddr,
    ) -> AuthFuture<'a> {
        Box::pin(async move {
            let Some(user) = username else { return Err(Refusal::NotAuthorized) };
            let r = self.check(client_id, user, password.unwrap_or_default()).await;
            if let Err(refusal) = &r {
                tracing::info!(%peer, user, ?refusal, "broker login refused");
            }
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::{may_publish, may_subscribe};

    #[test]
    fn each_login_reaches_only_its_topics() {
        let pair = pair_grants("cam-1");
        assert!(may_publish(&pair, "homehub/pair/cam-1/request"));
        assert!(!may_publish(&pair, "homehub/pair/cam-2/request"));
        assert!(may_subscribe(&pair, "homehub/pair/cam-1/response"));
        assert!(!may_subscribe(&pair, "homehub/pair/+/response"));
        assert!(!may_subscribe(&pair, "homehub/dev/#"));
        let dev = device_grants("cam-1");
        assert!(may_publish(&dev, "homehub/dev/cam-1/config"));
        assert!(!may_publish(&dev, "homehub/dev/cam-2/config"));
        assert!(may_subscribe(&dev, "homehub/dev/cam-1/cmd"));
        assert!(!may_subscribe(&dev, "homehub/dev/+/cmd"));
        let ro = user_grants(true);
        assert!(may_subscribe(&ro, "homeassistant/binary_sensor/#"));
        assert!(may_subscribe(&ro, "homehub/camera/+/motion"));
        assert!(!may_subscribe(&ro, "homehub/dev/cam-1/state"));
        assert!(!may_publish(&ro, "homehub/dev/cam-1/cmd"));
        let rw = user_grants(false);
        assert!(may_subscribe(&rw, "homehub/dev/cam-1/state"));
        assert!(!may_subscribe(&rw, "homehub/dev/cam-1/config"), "configs carry camera credentials");
        assert!(may_publish(&rw, "homehub/dev/cam-1/cmd"));
    }

    #[test]
    fn digests_compare_by_value() {
        assert!(same(&digest(b"a"), &digest(b"a")));
        assert!(!same(&digest(b"a"), &digest(b"b")));
        assert!(!same(b"a", b"ab"));
    }
}
