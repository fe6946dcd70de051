//! Phase 2, identify: the isolate's rotation budget (`intel::rotation`,
//! docs/profiles.md "Rotation budget"). A subject this isolate has no cached
//! verdict for, and did not admit within the last minutes, is new; past the
//! budget of its /48 or its ASN in this minute, the request is identified as
//! the widened subject instead (its /48 or /24) and carries
//! `subnet_rotation`. Counted in the isolate: no object call.

use std::cell::RefCell;
use std::net::IpAddr;

use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::ip::{identify, subject_of, widened_subject_of, Identity};
use crate::intel::rotation::{Admission, Rotation};

use super::verdicts;

thread_local! {
    static ROTATION: RefCell<Rotation> = RefCell::new(Rotation::default());
}

/// Who a request is.
pub struct Subject {
    /// The profile it is consulted, scored and recorded as: its own, or the
    /// widened one.
    pub identity: Identity,
    /// Its own subject's key (the /64 or the address, hashed like any key):
    /// what a challenge token and a clearance cookie are bound to, widened
    /// or not, so one solved challenge clears one device, not its whole /48
    /// (and `/challenge/verify`, which knows only the address, agrees).
    pub own_key: String,
    /// Past the budget (`subnet_rotation`).
    pub widened: bool,
}

/// The request's subject: its own (a known subject, or a new one within the
/// budget), or the widened one (past the budget).
pub fn subject(config: &Config, ip: IpAddr, asn: Option<u32>) -> Subject {
    let hash_key = config.secrets.ip_hash_key.as_deref();
    let own = identify(&subject_of(ip), hash_key);
    let own_key = own.key.as_str().to_string();
    if verdicts::cached(&config.consult, own.key.as_str()).is_some() {
        return Subject { identity: own, own_key, widened: false };
    }
    let admission = ROTATION.with(|r| r.borrow_mut().admit(config.subjects.rotation, ip, asn, now_ms()));
    match admission {
        Admission::Own => Subject { identity: own, own_key, widened: false },
        Admission::Widened => Subject { identity: identify(&widened_subject_of(ip), hash_key), own_key, widened: true },
    }
}
