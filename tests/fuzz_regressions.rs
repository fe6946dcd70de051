//! Inputs the fuzz targets (fuzz/, `bash scripts/fuzz.sh`) found, kept as
//! plain tests so they stay fixed.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use edgeintel::intel::ip::parse_client_ip;
use edgeintel::intel::lists::{Entry, ListVerdict, Lists, RawLists};

/// fuzz target `lists`: an entry written as a v4-mapped address did not match
/// that client, because the request path reads the client as v4.
#[test]
fn v4_mapped_list_entry_matches_its_client() {
    let client = parse_client_ip("::ffff:198.51.100.7");
    assert_eq!(client, Some("198.51.100.7".parse().unwrap()));
    for raw in ["::ffff:198.51.100.7", "::ffff:198.51.100.7/128", "::ffff:198.51.100.0/120"] {
        assert!(Entry::parse(raw).unwrap().matches(client, None, None), "{raw}");
    }
    let lists = Lists::parse(&RawLists { allow: vec![], block: vec!["::ffff:198.51.100.7".into()] }).unwrap();
    assert_eq!(lists.check(client, None, None), ListVerdict::Blocked);
    // A network wider than the mapped range stays an IPv6 network.
    assert!(!Entry::parse("::/0").unwrap().matches(client, None, None));
}
