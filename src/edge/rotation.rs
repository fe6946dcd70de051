//! Phase 2, identify: the isolate's rotation budget (`intel::rotation`,
//! docs/profiles.md "Rotation budget"). A subject this isolate has no cached
//! verdict for is new; past the budget of its /48 or its ASN in this minute,
//! the request is identified as the widened subject instead (its /48 or /24)
//! and carries `subnet_rotation`. Counted in the isolate: no object call.

use std::cell::RefCell;
use std::net::IpAddr;

use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::ip::{identify, subject_of, widened_subject_of, Identity};
use crate::intel::rotation::Rotation;

use super::verdicts;

thread_local! {
    static ROTATION: RefCell<Rotation> = RefCell::new(Rotation::default());
}

/// The request's subject: its own (a known subject, or a new one within the
/// budget), or the widened one (`true`: past the budget).
pub fn subject(config: &Config, ip: IpAddr, asn: Option<u32>) -> (Identity, bool) {
    let hash_key = config.secrets.ip_hash_key.as_deref();
    let own = identify(&subject_of(ip), hash_key);
    if verdicts::cached(&config.consult, own.key.as_str()).is_some() {
        return (own, false);
    }
    let widened = ROTATION.with(|r| r.borrow_mut().admit(config.subjects.rotation, ip, asn, now_ms()));
    match widened {
        None => (own, false),
        Some(_) => (identify(&widened_subject_of(ip), hash_key), true),
    }
}
