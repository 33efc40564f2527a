//! The network tests run on `lo` only. Multicast on `lo` works in this container (and on a
//! normal Linux host) even without the MULTICAST flag, because the kernel loops multicast
//! sent from and joined on 127.0.0.1 back locally. They fail, not skip, when it does not.
//! Other tests (and other processes) may advertise on `lo` at the same time, so each test
//! uses ids of its own and looks only for those.

use super::*;

const LO: &str = "lo";
const WAIT: Duration = Duration::from_secs(10);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(rand::random::<[u8; 6]>()))
}

fn lo() -> Vec<String> {
    vec![LO.to_string()]
}

/// Polls `f` every 100 ms until it gives something or `WAIT` passes.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn device_candidate(mdns: &Mdns, device_id: &str) -> Option<Candidate> {
    mdns.candidates().into_iter().find(|c| c.kind == "device" && c.txt.get("id").map(String::as_str) == Some(device_id))
}

#[test]
fn hub_advert_is_found_on_lo_by_a_second_daemon() {
    let hub_id = hex::encode(rand::random::<[u8; 16]>());
    let fp = hex::encode(rand::random::<[u8; 32]>());
    let mdns = Mdns::start(&lo()).unwrap();
    let ad = HubAdvert { hub_id: hub_id.clone(), web_port: 18443, mqtt_port: 18883, fp: fp.clone() };
    mdns.advertise_hub(&ad).unwrap();

    let started = Instant::now();
    let found = find_hub_where(LO, WAIT, |h| h.hub_id == hub_id).unwrap();
    eprintln!("resolved in {:?}", started.elapsed());
    assert_eq!(
        found,
        FoundHub { host: "127.0.0.1".parse().unwrap(), web_port: 18443, mqtt_port: 18883, hub_id: hub_id.clone(), fp }
    );

    mdns.shutdown();
    let gone = find_hub_where(LO, Duration::from_millis(2500), |h| h.hub_id == hub_id);
    assert_eq!(gone.unwrap_err().kind(), ErrorKind::NotFound, "shutdown withdraws the advert");
}

#[test]
fn a_waiting_device_finds_the_hub_on_its_own_daemon_again_and_again() {
    let hub_id = hex::encode(rand::random::<[u8; 16]>());
    let mdns = Mdns::start(&lo()).unwrap();
    let ad = HubAdvert { hub_id: hub_id.clone(), web_port: 1, mqtt_port: 2, fp: "c".repeat(64) };
    mdns.advertise_hub(&ad).unwrap();
    let advert = advertise_device(LO, &unique("mdns-test-wait"), 3).unwrap();
    for _ in 0..2 {
        let found = advert.find_hub_where(WAIT, |h| h.hub_id == hub_id).unwrap();
        assert_eq!((found.mqtt_port, found.fp.as_str()), (2, "c".repeat(64).as_str()));
    }
    advert.stop();
    mdns.shutdown();
}

#[test]
fn device_advert_is_a_candidate_until_it_stops() {
    let device_id = unique("mdns-test-dev");
    let mdns = Mdns::start(&lo()).unwrap();
    let advert = advertise_device(LO, &device_id, 18554).unwrap();

    let c = eventually("the device candidate", || device_candidate(&mdns, &device_id));
    assert_eq!(c.instance, device_id);
    assert_eq!(c.port, 18554);
    assert_eq!(c.txt.get("v").map(String::as_str), Some("1"));
    assert!(!c.addrs.is_empty());
    assert!(c.addrs.iter().all(IpAddr::is_loopback), "only lo addresses: {:?}", c.addrs);

    advert.stop();
    eventually("the device candidate to go", || device_candidate(&mdns, &device_id).is_none().then_some(()));
    mdns.shutdown();
}

#[test]
fn dropping_a_device_advert_withdraws_it() {
    let device_id = unique("mdns-test-drop");
    let mdns = Mdns::start(&lo()).unwrap();
    let advert = advertise_device(LO, &device_id, 1).unwrap();
    eventually("the device candidate", || device_candidate(&mdns, &device_id));
    drop(advert);
    eventually("the device candidate to go", || device_candidate(&mdns, &device_id).is_none().then_some(()));
    mdns.shutdown();
}

#[test]
fn one_shot_browse_lists_a_device() {
    let device_id = unique("mdns-test-browse");
    let _advert = advertise_device(LO, &device_id, 18555).unwrap();
    let list = browse(LO, "_homehub-dev._tcp", Duration::from_secs(3)).unwrap();
    let (instance, addrs, port, txt) =
        list.into_iter().find(|(_, _, _, txt)| txt.get("id") == Some(&device_id)).expect("the device is listed");
    assert_eq!(instance, device_id);
    assert_eq!(port, 18555);
    assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
    assert_eq!(txt.get("v").map(String::as_str), Some("1"));
}

#[test]
fn unknown_interfaces_are_refused_by_name() {
    let e = Mdns::start(&["nosuch0".to_string()]).err().expect("refused");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(e.message(), "mDNS interface 'nosuch0' does not exist");
    assert!(find_hub("nosuch0", Duration::from_millis(10)).is_err());
    assert!(advertise_device("nosuch0", "cam-1", 1).is_err());
    assert!(browse("lo\0", "_rtsp._tcp", Duration::from_millis(10)).is_err());
}

#[test]
fn find_hub_gives_up_naming_the_interface() {
    let e = find_hub_where(LO, Duration::from_millis(300), |_| false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("interface lo"), "{e}");
}

#[test]
fn bad_adverts_are_refused() {
    let mdns = Mdns::start(&lo()).unwrap();
    let ok = HubAdvert { hub_id: "abc".into(), web_port: 1, mqtt_port: 2, fp: "a".repeat(64) };
    let bad_id = HubAdvert { hub_id: "a b".into(), ..ok.clone() };
    assert!(mdns.advertise_hub(&bad_id).unwrap_err().message().starts_with("mDNS hub id: "));
    let bad_fp = HubAdvert { fp: "xyz".into(), ..ok };
    assert!(mdns.advertise_hub(&bad_fp).unwrap_err().message().starts_with("mDNS fp: "));
    assert!(advertise_device(LO, "Not_An_Id", 1).unwrap_err().message().starts_with("device id: "));
    mdns.shutdown();
}

#[test]
fn lan_addresses() {
    for a in ["10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.0.9", "fd00::2", "fe80::1"] {
        assert!(on_lan(a.parse().unwrap()), "{a}");
    }
    for a in ["127.0.0.1", "8.8.8.8", "192.0.2.2", "::1", "2001:db8::1", "100.64.0.1"] {
        assert!(!on_lan(a.parse().unwrap()), "{a}");
    }
}

#[test]
fn service_types() {
    for s in ["_rtsp._tcp", "_rtsp._tcp.local", "_rtsp._tcp.local."] {
        assert_eq!(service_type(s).unwrap(), "_rtsp._tcp.local.");
    }
    assert_eq!(service_type("_homehub-dev._udp").unwrap(), "_homehub-dev._udp.local.");
    for s in ["rtsp", "_rtsp", "rtsp._tcp", "_rtsp._sctp", "_a b._tcp", "", "_._tcp"] {
        assert!(service_type(s).is_err(), "{s}");
    }
}

#[test]
fn instance_names() {
    assert_eq!(instance_name("cam-1._homehub-dev._tcp.local.", "_homehub-dev._tcp.local."), "cam-1");
    assert_eq!(instance_name("odd", "_x._tcp.local."), "odd");
}

fn txt(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn hub_txt_is_checked() {
    let fp = "AB".repeat(32);
    let good = txt(&[("v", "1"), ("id", "hub1"), ("mqtt", "8883"), ("fp", &fp)]);
    let v4: IpAddr = "192.168.1.5".parse().unwrap();
    let ll: IpAddr = "fe80::1".parse().unwrap();
    let hub = hub_from_parts(&[ll, v4], 8443, &good).unwrap();
    assert_eq!(hub.host, v4, "a link-local IPv6 address is skipped");
    assert_eq!((hub.web_port, hub.mqtt_port), (8443, 8883));
    assert_eq!(hub.fp, "ab".repeat(32));

    let cases: Vec<(BTreeMap<String, String>, &str)> = vec![
        (txt(&[("id", "h"), ("mqtt", "1"), ("fp", &fp)]), "TXT v missing"),
        (txt(&[("v", "2"), ("id", "h"), ("mqtt", "1"), ("fp", &fp)]), "TXT v=2 is not 1"),
        (txt(&[("v", "1"), ("mqtt", "1"), ("fp", &fp)]), "TXT id missing"),
        (txt(&[("v", "1"), ("id", "h h"), ("mqtt", "1"), ("fp", &fp)]), "TXT id:"),
        (txt(&[("v", "1"), ("id", "h"), ("mqtt", "0"), ("fp", &fp)]), "TXT mqtt"),
        (txt(&[("v", "1"), ("id", "h"), ("mqtt", "99999"), ("fp", &fp)]), "TXT mqtt"),
        (txt(&[("v", "1"), ("id", "h"), ("mqtt", "1"), ("fp", "abcd")]), "TXT fp:"),
        (txt(&[("v", "1"), ("id", "h"), ("mqtt", "1")]), "TXT fp missing"),
    ];
    for (t, want) in cases {
        let e = hub_from_parts(&[v4], 8443, &t).unwrap_err();
        assert!(e.starts_with(want), "{e} (wanted {want})");
    }
    assert_eq!(hub_from_parts(&[ll], 8443, &good).unwrap_err(), "no usable address");
    assert_eq!(hub_from_parts(&[v4], 0, &good).unwrap_err(), "port 0");
}
