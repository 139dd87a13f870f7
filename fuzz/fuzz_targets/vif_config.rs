//! xl's vif syntax: any text gets a spec or an error naming the field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xennet_switch::config::{parse_mac, parse_rate, parse_vif_spec};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = parse_vif_spec(&text) {
        let _ = spec.mac_or_random();
        let _ = spec.addresses();
    } else if let Err(e) = parse_vif_spec(&text) {
        let _ = e.to_string();
    }
    let _ = parse_mac(&text);
    let _ = parse_rate(&text);
});
