//! The isolate's cache of profile verdicts (`CACHE_TTL_MS`, `CACHE_MAX_ENTRIES`):
//! filled by the consult and by every flush's answer (`record`), emptied for a
//! subject whose profile the API changed. Its own module so that the consult
//! and the record phases both use it without depending on each other.

use std::cell::RefCell;

use crate::clock::now_ms;
use crate::config::Consult;
use crate::intel::cache::TtlLru;
use crate::intel::profile::ProfileVerdict;

thread_local! {
    static CACHE: RefCell<Option<TtlLru<ProfileVerdict>>> = const { RefCell::new(None) };
}

fn with_cache<R>(consult: &Consult, f: impl FnOnce(&mut TtlLru<ProfileVerdict>) -> R) -> R {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let cache = c.get_or_insert_with(|| TtlLru::new(consult.cache_max_entries, f64::from(consult.cache_ttl_ms)));
        f(cache)
    })
}

pub fn remember(consult: &Consult, subject: &str, v: ProfileVerdict) {
    with_cache(consult, |c| c.put(subject, v, now_ms()));
}

pub fn forget(consult: &Consult, subject: &str) {
    with_cache(consult, |c| c.remove(subject));
}

/// The subject's verdict if the cache holds a fresh one.
pub fn cached(consult: &Consult, subject: &str) -> Option<ProfileVerdict> {
    with_cache(consult, |c| c.get(subject, now_ms()))
}
