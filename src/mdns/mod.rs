//! mDNS: advertise the hub, browse for devices and cameras, find a hub (device side).
