//! MQTT edge: authorising front end (TLS, ACL per client) relaying to an embedded rumqttd on loopback.
