//! xl vif syntax, rates and the topology file: accepted forms and every error path.

use xennet_switch::config::{
    parse_rate, parse_vif_spec, random_xen_mac, RateError, Script, Topology, TopologyError,
    UplinkSpec, VifSpecError, VifType,
};
use xennet_switch::wire::{Ipv4Address, MacAddr};
use xennet_switch::Mode;

#[test]
fn full_vif_spec_with_whitespace_is_parsed() {
    let v = parse_vif_spec(
        " mac=00:16:3E:74:3d:76 , bridge=xenbr0,ip=10.0.0.2 10.0.0.3/24,script=/etc/xen/scripts/vif-route,\
         rate=10Mb/s@20ms,vifname=web0,model=rtl8139,type=vif,backend=0,devid=1,mtu=9000,",
    )
    .unwrap();
    assert_eq!(v.mac, Some(MacAddr([0x00, 0x16, 0x3e, 0x74, 0x3d, 0x76])));
    assert_eq!(v.bridge.as_deref(), Some("xenbr0"));
    assert_eq!(
        v.addresses(),
        vec![Ipv4Address::new(10, 0, 0, 2), Ipv4Address::new(10, 0, 0, 3)]
    );
    assert_eq!(v.ips[1].prefix_len(), 24);
    assert_eq!(v.script, Some(Script::Route));
    let r = v.rate.unwrap();
    assert_eq!(
        (r.bytes_per_sec, r.interval_us, r.bytes_per_interval),
        (1_250_000, 20_000, 25_000)
    );
    assert_eq!(v.vifname.as_deref(), Some("web0"));
    assert_eq!(v.vif_type, VifType::Vif);
    assert_eq!((v.devid, v.mtu), (Some(1), Some(9000)));
    assert_eq!(v.notes.len(), 1, "model is noted as ignored: {:?}", v.notes);
}

#[test]
fn empty_spec_is_valid_and_gets_a_random_xen_mac() {
    let v = parse_vif_spec("").unwrap();
    assert_eq!(v.mac, None);
    for _ in 0..32 {
        let m = random_xen_mac();
        assert_eq!(&m.0[..3], &[0x00, 0x16, 0x3e]);
        assert!(
            m.is_unicast() && m.0[0] & 0x02 == 0,
            "unicast, globally administered"
        );
        assert_eq!(m.0[3] & 0x80, 0);
    }
    let m = v.mac_or_random();
    assert_eq!(&m.0[..3], &[0x00, 0x16, 0x3e]);
}

#[test]
fn ioemu_type_is_accepted_with_a_note() {
    let v = parse_vif_spec("type=ioemu").unwrap();
    assert_eq!(v.vif_type, VifType::Ioemu);
    assert!(!v.notes.is_empty());
}

fn err(spec: &str) -> VifSpecError {
    parse_vif_spec(spec).unwrap_err()
}

fn bad_key(spec: &str) -> &'static str {
    match err(spec) {
        VifSpecError::BadValue { key, .. } => key,
        other => panic!("{spec}: {other:?}"),
    }
}

#[test]
fn unknown_keys_duplicates_and_flags_are_errors_naming_them() {
    assert_eq!(
        err("mac=00:16:3e:00:00:01,colour=blue"),
        VifSpecError::UnknownKey("colour".into())
    );
    assert!(err("colour=blue").to_string().contains("colour"));
    assert_eq!(
        err("bridge=a,bridge=b"),
        VifSpecError::Duplicate("bridge".into())
    );
    assert_eq!(err("trusted"), VifSpecError::NotKeyValue("trusted".into()));
    assert!(matches!(
        err(&"a=b,".repeat(2000)),
        VifSpecError::TooLong(_)
    ));
}

#[test]
fn bad_macs_are_rejected_with_the_field_and_value() {
    for m in [
        "00:16:3e:00:00",
        "00:16:3e:00:00:0g",
        "0:16:3e:00:00:01",
        "01:16:3e:00:00:01",
        "00:00:00:00:00:00",
        "",
    ] {
        let e = err(&format!("mac={m}"));
        assert!(
            matches!(&e, VifSpecError::BadValue { key: "mac", value, .. } if value == m),
            "{m}: {e:?}"
        );
        assert!(e.to_string().starts_with("mac="), "{e}");
    }
}

#[test]
fn bad_ips_are_rejected() {
    for ip in [
        "10.0.0",
        "10.0.0.256",
        "10.0.0.1/33",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "host",
    ] {
        assert_eq!(bad_key(&format!("ip={ip}")), "ip", "{ip}");
    }
    assert_eq!(bad_key("ip="), "ip");
}

#[test]
fn bad_scripts_names_types_numbers_are_rejected() {
    assert_eq!(bad_key("script=vif-openvswitch"), "script");
    assert_eq!(bad_key("vifname=this-name-is-too-long"), "vifname");
    assert_eq!(bad_key("vifname=a/b"), "vifname");
    assert_eq!(bad_key("bridge="), "bridge");
    assert_eq!(bad_key("type=nic"), "type");
    assert_eq!(bad_key("devid=-1"), "devid");
    assert_eq!(bad_key("devid=70000"), "devid");
    assert_eq!(bad_key("mtu=67"), "mtu");
    assert_eq!(bad_key("mtu=big"), "mtu");
    assert_eq!(bad_key("backend="), "backend");
}

#[test]
fn rates_follow_libxl() {
    let r = parse_rate("10Mb/s").unwrap();
    assert_eq!(
        (r.bytes_per_sec, r.interval_us, r.bytes_per_interval),
        (1_250_000, 50_000, 62_500)
    );
    assert_eq!(parse_rate("512KB/s").unwrap().bytes_per_sec, 512_000);
    assert_eq!(
        parse_rate("1GB/s@1s").unwrap().bytes_per_interval,
        1_000_000_000
    );
    assert_eq!(
        parse_rate("100B/s@100000us").unwrap().bytes_per_interval,
        10
    );
    assert_eq!(
        parse_rate("8b/s@2").unwrap().interval_us,
        2_000_000,
        "a bare interval is seconds"
    );
    assert_eq!(parse_rate("1Mb/s@5m").unwrap().interval_us, 5_000);
}

#[test]
fn bad_rates_are_precise_errors() {
    assert_eq!(parse_rate("@50ms"), Err(RateError::Empty("@50ms".into())));
    for r in [
        "10Mb", "10 Mb/s", "Mb/s", "10Tb/s", "10Mx/s", "10MB/sec", "-1Mb/s",
    ] {
        assert_eq!(parse_rate(r), Err(RateError::BadRate(r.into())), "{r}");
    }
    assert_eq!(
        parse_rate("0Mb/s"),
        Err(RateError::RateOverflow("0Mb/s".into()))
    );
    assert_eq!(
        parse_rate("4294967296B/s"),
        Err(RateError::RateOverflow("4294967296B/s".into()))
    );
    assert_eq!(
        parse_rate("1Mb/s@fast"),
        Err(RateError::BadInterval("fast".into()))
    );
    assert_eq!(
        parse_rate("1Mb/s@ms"),
        Err(RateError::BadInterval("ms".into()))
    );
    assert_eq!(
        parse_rate("1Mb/s@0ms"),
        Err(RateError::IntervalOverflow("0ms".into()))
    );
    assert_eq!(
        parse_rate("1Mb/s@5000s"),
        Err(RateError::IntervalOverflow("5000s".into()))
    );
    let e = parse_vif_spec("rate=10Mbit").unwrap_err();
    assert!(e.to_string().starts_with("rate=\"10Mbit\""), "{e}");
}

const TOPO: &str = r#"
[driver_domain]
mode = "route"
uplink = "tap:xtap0"
ip = "128.153.144.204/24"
gateway = "128.153.144.1"
proxy_arp = true
captures = ["vif1.0=vif1.pcap", "peth0 = up.pcap"]

[uplink_host]
ip = "128.153.144.148/24"

[[guest]]
domid = 1
name = "web"
vifs = ["mac=00:16:3e:00:01:01,ip=128.153.144.205,script=vif-route",
        { mac = "00:16:3e:00:01:02", rate = "10Mb/s", devid = 3 }]

[[guest]]
domid = 2
"#;

#[test]
fn topology_file_is_parsed_with_defaults() {
    let t = Topology::from_toml_str(TOPO).unwrap();
    let dd = &t.driver_domain;
    assert_eq!(dd.mode, Mode::Route);
    assert_eq!(dd.uplink, UplinkSpec::Tap("xtap0".into()));
    assert_eq!(dd.gateway, Some(Ipv4Address::new(128, 153, 144, 1)));
    assert!(dd.proxy_arp && dd.ip_forward);
    assert_eq!(dd.bridge, "xenbr0");
    assert_eq!(dd.captures[1].target, "peth0");
    assert_eq!(t.uplink_host.tcp_echo_port, 7);
    assert_eq!(t.guests.len(), 2);
    assert_eq!(t.guests[0].vifs[0].devid, Some(0));
    assert_eq!(t.guests[0].vifs[1].devid, Some(3));
    assert_eq!(t.guests[0].vifs[1].rate.unwrap().bytes_per_interval, 62_500);
    assert_eq!(t.guests[1].name, "domU-2");
    let empty = Topology::from_toml_str("").unwrap();
    assert_eq!(empty.driver_domain.mode, Mode::Bridge);
    assert_eq!(empty.driver_domain.uplink, UplinkSpec::Sim);
}

fn topo_err(text: &str) -> String {
    let e = Topology::from_toml_str(text).unwrap_err();
    e.to_string()
}

#[test]
fn topology_errors_name_the_field() {
    let cases = [
        ("[driver_domain]\nmode = \"switch\"", "driver_domain.mode"),
        ("[driver_domain]\nuplink = \"eth0\"", "driver_domain.uplink"),
        ("[driver_domain]\nuplink = \"tap:\"", "driver_domain.uplink"),
        (
            "[driver_domain]\nuplink = \"pcap:\"",
            "driver_domain.uplink",
        ),
        (
            "[driver_domain]\nip = \"128.153.144.204\"",
            "driver_domain.ip",
        ),
        (
            "[driver_domain]\nip = \"128.153.144.204/40\"",
            "driver_domain.ip",
        ),
        ("[driver_domain]\ngateway = \"gw\"", "driver_domain.gateway"),
        (
            "[driver_domain]\nmac = \"ff:ff:ff:ff:ff:ff\"",
            "driver_domain.mac",
        ),
        ("[driver_domain]\nbridge = \"br 0\"", "driver_domain.bridge"),
        (
            "[driver_domain]\ncaptures = [\"nofile\"]",
            "driver_domain.captures[0]",
        ),
        ("[uplink_host]\nmac = \"00:04:76\"", "uplink_host.mac"),
        ("[[guest]]\ndomid = 0", "guest[0].domid"),
        ("[[guest]]\ndomid = 40000", "guest[0].domid"),
        (
            "[[guest]]\ndomid = 1\n[[guest]]\ndomid = 1",
            "guest[1].domid",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"mac=zz\"]",
            "guest[0].vifs[0]",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [{ colour = \"blue\" }]",
            "colour",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [{ mac = true }]",
            "guest[0].vifs[0].mac",
        ),
        ("[[guest]]\ndomid = 1\nvifs = [3]", "guest[0].vifs[0]"),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"devid=1\", \"\"]",
            "guest[0].vifs[1].devid",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"script=vif-nat\"]",
            "guest[0].vifs[0].script",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"bridge=xenbr1\"]",
            "guest[0].vifs[0].bridge",
        ),
        ("[driver_domain]\nflavour = 1", "flavour"),
        ("[[guest]]\nname = \"x\"", "domid"),
    ];
    for (text, needle) in cases {
        let e = topo_err(text);
        assert!(e.contains(needle), "{text:?}: {e}");
    }
    assert!(matches!(
        Topology::load(std::path::Path::new("/nonexistent/topo.toml")),
        Err(TopologyError::Io { .. })
    ));
}

#[test]
fn topology_refuses_a_mac_or_address_two_guests_share_or_that_is_the_driver_domains() {
    let two = |a: &str, b: &str| {
        format!("[[guest]]\ndomid = 1\nvifs = [\"{a}\"]\n[[guest]]\ndomid = 2\nvifs = [\"{b}\"]")
    };
    let cases = [
        (
            two("mac=00:16:3e:00:01:01", "mac=00:16:3e:00:01:01"),
            "guest[1].vifs[0].mac = \"00:16:3e:00:01:01\": already guest[0].vifs[0]'s (domain 1)",
        ),
        (
            two("ip=128.153.144.210", "ip=128.153.144.210/24"),
            "guest[1].vifs[0].ip = \"128.153.144.210\": already guest[0].vifs[0]'s (domain 1)",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"mac=00:16:3e:00:01:01\", \"mac=00:16:3e:00:01:01\"]"
                .to_string(),
            "guest[0].vifs[1].mac = \"00:16:3e:00:01:01\": already guest[0].vifs[0]'s (domain 1)",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"mac=00:16:3e:00:00:01\"]".to_string(),
            "guest[0].vifs[0].mac = \"00:16:3e:00:00:01\": the driver domain's (driver_domain.mac)",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"ip=128.153.144.204\"]".to_string(),
            "guest[0].vifs[0].ip = \"128.153.144.204\": the driver domain's (driver_domain.ip)",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"mac=00:04:76:35:0a:72\"]".to_string(),
            "guest[0].vifs[0].mac = \"00:04:76:35:0a:72\": the simulated uplink host's (uplink_host.mac)",
        ),
        (
            "[[guest]]\ndomid = 1\nvifs = [\"ip=128.153.144.148\"]".to_string(),
            "guest[0].vifs[0].ip = \"128.153.144.148\": the simulated uplink host's (uplink_host.ip)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(topo_err(&text), want, "{text}");
    }
}
