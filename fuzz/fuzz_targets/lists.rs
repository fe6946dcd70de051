//! Allow and block lists: single entries (`Entry::parse`: IPs, CIDRs, ASNs,
//! countries), the `PUT /api/config/lists` body (a JSON object read as
//! `RawLists`, then `Lists::parse`) and the copy stored in KV (read back as
//! `RawLists`). Never panics; an entry prints back to itself; an address
//! entry matches that address as the request path parses it.
#![no_main]

use std::net::IpAddr;

use edgeintel::intel::ip::parse_client_ip;
use edgeintel::intel::lists::{Entry, Lists, RawLists, MAX_ENTRIES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn printed(e: &Entry) -> String {
    match e {
        Entry::Net(ip, len) => format!("{ip}/{len}"),
        Entry::Asn(n) => format!("AS{n}"),
        Entry::Country(c) => format!("country:{c}"),
    }
}

fn check_entry(raw: &str) {
    let Ok(e) = Entry::parse(raw) else { return };
    match &e {
        Entry::Net(ip, len) => {
            assert!(*len <= if ip.is_ipv4() { 32 } else { 128 }, "{raw:?}: prefix /{len}");
            assert!(e.matches(Some(*ip), None, None), "{raw:?}: {ip} is not in its own network");
        }
        Entry::Asn(n) => assert!(*n > 0, "{raw:?}: AS0"),
        Entry::Country(c) => {
            assert!(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()), "{raw:?}")
        }
    }
    let again = printed(&e);
    assert_eq!(Entry::parse(&again).as_ref(), Ok(&e), "{raw:?} prints as {again:?}, which parses differently");
    // An entry written as a client address matches that client.
    if let Some(client) = parse_client_ip(raw) {
        assert!(e.matches(Some(client), None, None), "entry {raw:?} does not match the client {client}");
    }
}

fn check_lists(raw: &RawLists) {
    match Lists::parse(raw) {
        Ok(l) => {
            assert_eq!((l.allow.len(), l.block.len()), (raw.allow.len(), raw.block.len()));
            assert!(l.allow.len() + l.block.len() <= MAX_ENTRIES);
            assert!(raw.allow.iter().chain(&raw.block).all(|e| Entry::parse(e).is_ok()));
            let _ = l.check(Some(IpAddr::from([203, 0, 113, 7])), Some(64496), Some("DE"));
        }
        Err(m) => assert!(!m.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check_entry(text);
    text.lines().for_each(check_entry);

    // The API body: an object only, read as RawLists, every entry validated.
    if let Ok(body) = serde_json::from_str::<Value>(text) {
        if body.is_object() {
            if let Ok(raw) = serde_json::from_value::<RawLists>(body) {
                raw.allow.iter().chain(&raw.block).for_each(|e| check_entry(e));
                check_lists(&raw);
                // What is stored in KV reads back as the same lists.
                let stored = serde_json::to_string(&raw).unwrap_or_else(|e| panic!("lists do not serialize: {e}"));
                assert_eq!(serde_json::from_str::<RawLists>(&stored).ok().as_ref(), Some(&raw), "{stored}");
            }
        }
    }
    // The KV copy, read directly as RawLists.
    if let Ok(raw) = serde_json::from_str::<RawLists>(text) {
        check_lists(&raw);
    }
});
