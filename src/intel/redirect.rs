//! Where a solved challenge sends the browser back to, and whether a
//! Turnstile siteverify answer is for this site.
//!
//! The `return` value comes from the client, so it must never name another
//! site. String filters are not enough: URL parsers remove tab, newline and CR
//! anywhere and read `\` as `/`, so `/<TAB>/evil.example` or `/\evil.example`
//! reach the browser as `//evil.example`, another host. Instead the value is
//! resolved by a real URL parser against the request's own URL, accepted only
//! if the result has the request's origin, and emitted as path and query only
//! (which must resolve back to the same URL).

use url::Url;

/// The same-origin path and query `ret` resolves to against the root of
/// `request_url`'s origin, or `None` when it would leave the origin (or
/// either does not parse).
pub fn same_origin_return(request_url: &str, ret: &str) -> Option<String> {
    let base = Url::parse(request_url).ok()?.join("/").ok()?;
    if !matches!(base.scheme(), "http" | "https") {
        return None;
    }
    let target = base.join(ret).ok()?;
    if target.origin() != base.origin() {
        return None;
    }
    let mut emitted = target.path().to_string();
    if let Some(q) = target.query() {
        emitted.push('?');
        emitted.push_str(q);
    }
    // The emitted text is parsed again by the browser, relative to this
    // origin: it must start with one `/` and resolve to the same place (a
    // path like `//evil.example`, from `/.//evil.example`, would not).
    if !emitted.starts_with('/') || emitted.starts_with("//") || emitted.contains('\\') {
        return None;
    }
    let again = base.join(&emitted).ok()?;
    let mut wanted = target;
    wanted.set_fragment(None);
    (again == wanted).then_some(emitted)
}

/// The host part of a URL (no port), for comparing with siteverify's `hostname`.
pub fn host_of(request_url: &str) -> Option<String> {
    Url::parse(request_url).ok()?.host_str().map(str::to_ascii_lowercase)
}

/// Whether a Turnstile siteverify answer accepts the response for `host`:
/// `success` must be true and `hostname` (the site the widget was solved on)
/// must be this request's host, so a token solved on another site using the
/// same widget keys does not clear a client here.
pub fn turnstile_accepts(answer: &serde_json::Value, host: &str) -> Result<(), &'static str> {
    if answer.get("success").and_then(serde_json::Value::as_bool) != Some(true) {
        return Err("Turnstile did not accept the response");
    }
    match answer.get("hostname").and_then(serde_json::Value::as_str) {
        Some(h) if h.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err("the Turnstile response was solved for another hostname"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const REQ: &str = "https://shop.example/_intel/challenge/verify";

    #[test]
    fn good_paths_keep_their_query() {
        for (ret, want) in [
            ("/", "/"),
            ("/checkout", "/checkout"),
            ("/checkout?step=2", "/checkout?step=2"),
            ("/a/b?x=1&y=%2F%2Fz", "/a/b?x=1&y=%2F%2Fz"),
            ("/search?q=a%20b#frag", "/search?q=a%20b"),
            ("https://shop.example/cart?id=7", "/cart?id=7"),
            ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
            ("/%5Cevil.example", "/%5Cevil.example"),
            ("/a/../b", "/b"),
            // Relative forms resolve against the origin's root, as a browser would.
            ("checkout?x=1", "/checkout?x=1"),
            ("https:evil.example", "/evil.example"),
        ] {
            assert_eq!(same_origin_return(REQ, ret).as_deref(), Some(want), "{ret:?}");
        }
    }

    #[test]
    fn other_hosts_are_refused() {
        for ret in [
            "//evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "\t//evil.example",
            "/\r\n/evil.example",
            "/\\\t\\evil.example",
            "https://evil.example/",
            "http://shop.example/",
            "https://shop.example:8443/",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "/.//evil.example",
            "/./\\evil.example",
            "//shop.example@evil.example",
            "https://shop.example@evil.example/",
        ] {
            assert_eq!(same_origin_return(REQ, ret), None, "{ret:?}");
        }
    }

    #[test]
    fn emitted_paths_never_start_with_two_slashes() {
        // Dot segments can leave a path that starts with `//` after parsing.
        for ret in ["/x/..//evil.example", "/..//evil.example", "/.//evil.example"] {
            assert_eq!(Url::parse(REQ).unwrap().join(ret).unwrap().path(), "//evil.example", "{ret:?}");
            assert_eq!(same_origin_return(REQ, ret), None, "{ret:?}");
        }
        // Encoded controls stay encoded: a path on this site.
        for (ret, want) in [("/%09/evil.example", "/%09/evil.example"), ("/%0a/evil.example", "/%0a/evil.example")] {
            assert_eq!(same_origin_return(REQ, ret).as_deref(), Some(want), "{ret:?}");
        }
    }

    #[test]
    fn turnstile_hostname() {
        assert_eq!(host_of(REQ).as_deref(), Some("shop.example"));
        assert_eq!(host_of("http://edge.test:8787/x").as_deref(), Some("edge.test"));
        let ok = json!({"success": true, "hostname": "shop.example"});
        assert!(turnstile_accepts(&ok, "shop.example").is_ok());
        assert!(turnstile_accepts(&json!({"success": true, "hostname": "SHOP.example"}), "shop.example").is_ok());
        assert!(turnstile_accepts(&json!({"success": true, "hostname": "evil.example"}), "shop.example").is_err());
        assert!(turnstile_accepts(&json!({"success": true}), "shop.example").is_err(), "no hostname");
        assert!(turnstile_accepts(&json!({"success": false, "hostname": "shop.example"}), "shop.example").is_err());
        assert!(turnstile_accepts(&json!({"success": "true", "hostname": "shop.example"}), "shop.example").is_err());
    }
}
