//! WebSocket client messages (`subscribe`, `unsubscribe`, `ping`) through
//! `protocol::parse_client`. Never panics; oversized messages are refused; a
//! parsed filter is normalised (country codes, subject keys), survives the
//! socket attachment's round trip, and parses to itself when sent again.
#![no_main]

use edgeintel::intel::facts::country_code;
use edgeintel::intel::ip::parse_subject;
use edgeintel::intel::protocol::{parse_client, ClientMessage, SocketState, MAX_CLIENT_MESSAGE_BYTES};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 (the runtime hands us a string).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse_client(text);
    if text.len() > MAX_CLIENT_MESSAGE_BYTES {
        assert!(parsed.is_err(), "a message of {} bytes was accepted", text.len());
    }
    let Ok(ClientMessage::Subscribe(sub)) = parsed else { return };
    for c in sub.countries.iter().flatten() {
        assert_eq!(country_code(c).as_deref(), Some(c.as_str()), "country {c:?} is not normalised");
    }
    if let Some(ip) = &sub.ip {
        assert_eq!(parse_subject(ip).as_ref().map(|k| k.as_str()), Some(ip.as_str()), "ip {ip:?} is not a subject key");
    }
    // The filter is kept in the socket's attachment across hibernation.
    let state = SocketState { subscription: sub.clone(), window_start: 1.0, count: 2 };
    let attached = serde_json::to_string(&state).unwrap_or_else(|e| panic!("attachment does not serialize: {e}"));
    let restored: SocketState =
        serde_json::from_str(&attached).unwrap_or_else(|e| panic!("attachment {attached} does not parse: {e}"));
    assert_eq!(restored, state, "attachment {attached} changed the filter");
    // Sending the normalised filter again gives the same subscription.
    let again = json!({
        "type": "subscribe",
        "eventTypes": sub.event_types,
        "filter": {"minSeverity": sub.min_severity, "countries": sub.countries, "ip": sub.ip},
    })
    .to_string();
    if again.len() <= MAX_CLIENT_MESSAGE_BYTES {
        match parse_client(&again) {
            Ok(ClientMessage::Subscribe(s)) => assert_eq!(s, sub, "{again} parses to another filter"),
            other => panic!("{again} parses to {other:?}"),
        }
    }
});
