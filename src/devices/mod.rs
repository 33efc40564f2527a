//! Devices: the hub side of MQTT (pairing, device config/availability, Home Assistant discovery).
