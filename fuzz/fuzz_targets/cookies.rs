//! Cookies and credentials: the `Cookie` header (`cookie`), the visitor
//! cookie (`verify_visitor_cookie`), the clearance cookie (`clearance_valid`,
//! `clearance_issued`),
//! a solved challenge (`verify_solution`) and `Authorization` (`bearer`).
//!
//! Input: lines `Cookie header`, `Authorization header`, `challenge token`,
//! `counter`; every parser also sees the whole input. Never panics, and
//! anything that verifies was issued with the key, for this subject.
#![no_main]

use edgeintel::intel::enforce::{
    clearance, clearance_issued, clearance_valid, issue_token, verify_solution, work_ok, CLEARANCE_COOKIE,
};
use edgeintel::intel::secrets::{bearer, cookie, sign_visitor_id, verify_visitor_cookie, VISITOR_COOKIE_NAME};
use libfuzzer_sys::fuzz_target;

/// The keys, subject and clock the committed seeds were issued with.
const KEY: &str = "fuzz-signing-key-0123456789abcdef";
const OTHER_KEY: &str = "fuzz-other-key-0123456789abcdef";
const SUBJECT: &str = "203.0.113.7";
const OTHER_SUBJECT: &str = "203.0.113.8";
const NOW: f64 = 1_780_000_000_000.0;

fn check_cookie_header(header: &str) {
    for name in [VISITOR_COOKIE_NAME, CLEARANCE_COOKIE, "session_id"] {
        if let Some(v) = cookie(header, name) {
            assert!(v.trim() == v && !v.contains(';') && header.contains(v), "cookie {name}={v:?} from {header:?}");
        }
    }
    if let Some(v) = cookie(header, VISITOR_COOKIE_NAME) {
        check_visitor(v);
    }
    if let Some(v) = cookie(header, CLEARANCE_COOKIE) {
        check_clearance(v);
    }
}

fn check_visitor(value: &str) {
    let Some(id) = verify_visitor_cookie(KEY, value) else { return };
    assert!(!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "visitor id {id:?}");
    let issued = sign_visitor_id(KEY, id).unwrap_or_default();
    assert!(issued.eq_ignore_ascii_case(value), "visitor cookie {value:?} was not issued with the key ({issued})");
    assert!(verify_visitor_cookie(OTHER_KEY, value).is_none(), "visitor cookie {value:?} verifies with another key");
}

fn check_clearance(value: &str) {
    if !clearance_valid(KEY, SUBJECT, value, NOW) {
        return;
    }
    let parts: Vec<&str> = value.split('.').collect();
    let expires = parts.first().and_then(|e| e.parse::<u64>().ok());
    let at = clearance_issued(KEY, SUBJECT, value, NOW);
    if let [e, i, _sig] = parts.as_slice() {
        // `<expires>.<issued>.<sig>`: exactly what `clearance` issues.
        let (e, i) = (e.parse::<u64>().ok(), i.parse::<u64>().ok());
        let reissued = e.zip(i).and_then(|(e, i)| clearance(KEY, SUBJECT, i, e)).unwrap_or_default();
        assert!(reissued.eq_ignore_ascii_case(value), "clearance {value:?} was not issued with the key ({reissued})");
        assert_eq!(at, i.map(|i| i as f64), "clearance {value:?}: issue time");
    } else {
        // The earlier `<expires>.<sig>`: issued before any step-up.
        assert_eq!(parts.len(), 2, "clearance {value:?} has neither form");
        assert_eq!(at, Some(0.0), "clearance {value:?}: an earlier cookie is issued at 0");
    }
    assert!(expires.is_some_and(|e| e as f64 > NOW), "clearance {value:?} has expired");
    assert!(!clearance_valid(OTHER_KEY, SUBJECT, value, NOW), "clearance {value:?} is valid with another key");
    assert!(!clearance_valid(KEY, OTHER_SUBJECT, value, NOW), "clearance {value:?} is valid for another subject");
}

fn check_solution(token: &str, counter: u64) {
    if verify_solution(KEY, SUBJECT, token, counter, NOW, 1).is_err() {
        return;
    }
    let parts: Vec<&str> = token.split('.').collect();
    let (nonce, issued, difficulty, label) = match parts.as_slice() {
        [n, i, d, l, _sig] => (*n, *i, *d, Some(*l)),
        // The earlier `nonce.issued.difficulty.sig` (no label) still verifies.
        [n, i, d, _sig] => (*n, *i, *d, None),
        _ => panic!("accepted token {token:?} has not 4 or 5 parts"),
    };
    let issued_ms = issued.parse::<u64>().unwrap_or_else(|_| panic!("accepted token {token:?}: issued {issued:?}"));
    let d = difficulty.parse::<u8>().unwrap_or_else(|_| panic!("accepted token {token:?}: difficulty {difficulty:?}"));
    if let Some(l) = label {
        let bytes: Option<Vec<u8>> = (l.len() % 2 == 0)
            .then(|| (0..l.len()).step_by(2).map(|i| l.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect())
            .flatten();
        let label = bytes.and_then(|b| String::from_utf8(b).ok());
        let label = label.unwrap_or_else(|| panic!("accepted token {token:?}: label {l:?}"));
        let reissued = issue_token(KEY, SUBJECT, nonce, issued_ms, d, &label).unwrap_or_default();
        assert!(reissued.eq_ignore_ascii_case(token), "token {token:?} was not issued with the key ({reissued})");
    }
    assert!(d >= 1 && work_ok(token, counter, d), "token {token:?} accepted without the work (counter {counter})");
    assert!(verify_solution(OTHER_KEY, SUBJECT, token, counter, NOW, 1).is_err(), "token valid with another key");
    assert!(verify_solution(KEY, OTHER_SUBJECT, token, counter, NOW, 1).is_err(), "token valid for another subject");
}

fn check_bearer(header: &str) {
    if let Some(t) = bearer(header) {
        assert!(!t.is_empty() && t.trim() == t && header.contains(t), "bearer {t:?} from {header:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let (cookies, auth, token, counter) = (lines.next(), lines.next(), lines.next(), lines.next());
    check_cookie_header(cookies.unwrap_or_default());
    check_bearer(auth.unwrap_or_default());
    let counter = counter.and_then(|c| c.trim().parse::<u64>().ok()).unwrap_or_default();
    check_solution(token.unwrap_or_default(), counter);

    check_cookie_header(text);
    check_visitor(text);
    check_clearance(text);
    check_bearer(text);
    check_solution(text, counter);
});
