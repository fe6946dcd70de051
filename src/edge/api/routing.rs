//! The route table's vocabulary and its lookup: methods, who may call a
//! route, path patterns, and which row (or which 404/405) a request gets.
//! Pure: no runtime type, so it also compiles natively and `cargo test`
//! checks it (the table itself is `super::ROUTES`).
//!
//! A pattern is matched against the raw (percent-encoded) path after the
//! prefix, segment by segment, case-sensitively: a literal segment must be
//! equal, `{name}` takes one segment (an empty one too: the handler then
//! refuses it, as it refuses any other bad value), and a last `{*name}` takes
//! the rest of the path, slashes included (an IPv6 `/64` typed unencoded).
//! `""` is the prefix itself, `/` the prefix with a slash.

/// The methods the API answers. Any other method matches no row (405).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
}

impl Method {
    /// The request's method as the runtime gives it (upper case for these).
    pub fn parse(method: &str) -> Option<Method> {
        Some(match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// Who may call a route, and so in which order a request is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone, answered before anything else (not even the block list is
    /// read): liveness, which carries no data.
    Open,
    /// Anyone who is not block-listed (the challenge answer). The method
    /// is checked first (405).
    Public,
    /// Like `Public`, for the dashboard's static files: not operations of
    /// the API, so absent from its OpenAPI document. They carry no data.
    Files,
    /// The admin token (`Authorization: Bearer`), checked before anything
    /// else about the request, so a caller without it learns nothing: not
    /// even whether the route exists or which methods it has.
    Admin,
    /// A WebSocket stream: the method is checked first (405), then the
    /// upgrade (426), then the admin token, which may also come as a
    /// single-use `?ticket=` or the `bearer, <token>` subprotocol.
    Stream,
}

/// One row of the table: the methods it answers, its path pattern, who may
/// call it and what answers it (`H`: the handler; `()` natively).
pub struct Route<H> {
    pub methods: &'static [Method],
    pub path: &'static str,
    pub auth: Auth,
    pub handler: H,
}

/// What a pattern's `{name}` and `{*name}` took from the path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params<'p>(Vec<(&'static str, &'p str)>);

impl<'p> Params<'p> {
    /// The value of `name` (empty when the pattern has no such parameter).
    pub fn get(&self, name: &str) -> &'p str {
        self.0.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v)
    }
}

/// The answer of `lookup`.
pub enum Lookup<'r, 'p, H> {
    /// A row answers: call its handler with these parameters.
    Route(&'r Route<H>, Params<'p>),
    /// The path has rows, none for this method: 405 with `allow` (the rows'
    /// methods in table order), after the path's `auth` is satisfied.
    WrongMethod { auth: Auth, allow: Vec<&'static str> },
    /// No row has this path: 404.
    NotFound,
}

impl<H> Lookup<'_, '_, H> {
    /// Who may learn what this path holds (`None`: no row has the path).
    pub fn auth(&self) -> Option<Auth> {
        match self {
            Lookup::Route(r, _) => Some(r.auth),
            Lookup::WrongMethod { auth, .. } => Some(*auth),
            Lookup::NotFound => None,
        }
    }
}

/// The row for `method` and `path` (the path after the prefix). Rows that
/// share a path share its `auth` (a test holds the table to that).
pub fn lookup<'r, 'p, H>(routes: &'r [Route<H>], method: &str, path: &'p str) -> Lookup<'r, 'p, H> {
    let method = Method::parse(method);
    let mut allow: Vec<&'static str> = Vec::new();
    let mut auth = None;
    for route in routes {
        let Some(params) = matches(route.path, path) else { continue };
        if method.is_some_and(|m| route.methods.contains(&m)) {
            return Lookup::Route(route, params);
        }
        auth.get_or_insert(route.auth);
        for m in route.methods {
            if !allow.contains(&m.as_str()) {
                allow.push(m.as_str());
            }
        }
    }
    match auth {
        Some(auth) => Lookup::WrongMethod { auth, allow },
        None => Lookup::NotFound,
    }
}

/// The parameters `pattern` takes from `path`, or `None` if it does not match.
pub fn matches<'p>(pattern: &'static str, path: &'p str) -> Option<Params<'p>> {
    let mut params = Params::default();
    let mut segments = path.split('/');
    // Where the next segment of `path` starts.
    let mut at = 0usize;
    for part in pattern.split('/') {
        if let Some(name) = part.strip_prefix("{*").and_then(|n| n.strip_suffix('}')) {
            params.0.push((name, path.get(at..)?));
            return Some(params);
        }
        let segment = segments.next()?;
        at += segment.len() + 1;
        match part.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            Some(name) => params.0.push((name, segment)),
            None if part == segment => {}
            None => return None,
        }
    }
    segments.next().is_none().then_some(params)
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    /// (pattern, path, the parameters it takes, or `None`: no match)
    type Case = (&'static str, &'static str, Option<&'static [(&'static str, &'static str)]>);

    #[test]
    fn patterns_match_segment_by_segment() {
        let cases: &[Case] = &[
            ("", "", Some(&[])),
            ("", "/", None),
            ("/", "/", Some(&[])),
            ("/", "", None),
            ("/", "//", None),
            ("/metrics", "/metrics", Some(&[])),
            ("/metrics", "/metrics/", None),
            ("/metrics", "/Metrics", None),
            ("/metrics", "/metric", None),
            ("/api/events", "/api%2Fevents", None),
            ("/api/events", "//api/events", None),
            ("/dist/{file}", "/dist/app.js", Some(&[("file", "app.js")])),
            ("/dist/{file}", "/dist/", Some(&[("file", "")])),
            ("/dist/{file}", "/dist/%2e%2e/api/openapi.json", None),
            ("/dist/{file}", "/dist", None),
            ("/m/{name}/history", "/m/error_rate/history", Some(&[("name", "error_rate")])),
            ("/m/{name}/history", "/m/error_rate", None),
            ("/m/{name}", "/m/history", Some(&[("name", "history")])),
            ("/m/{name}", "/m/a/b", None),
            ("/ip/{*ip}", "/ip/2001:db8::/64", Some(&[("ip", "2001:db8::/64")])),
            ("/ip/{*ip}", "/ip/198.51.100.7", Some(&[("ip", "198.51.100.7")])),
            ("/ip/{*ip}", "/ip/", Some(&[("ip", "")])),
            ("/ip/{*ip}", "/ip", None),
            ("/ip/{*ip}", "/ipx/1", None),
        ];
        for (pattern, path, want) in cases {
            let got = matches(pattern, path);
            assert_eq!(got.is_some(), want.is_some(), "{pattern} against {path:?}");
            if let (Some(got), Some(want)) = (got, want) {
                for (name, value) in *want {
                    assert_eq!(got.get(name), *value, "{pattern} against {path:?}: {name}");
                }
                assert_eq!(got.0.len(), want.len(), "{pattern} against {path:?}");
            }
        }
    }

    const GET_HEAD: &[Method] = &[Method::Get, Method::Head];
    const ROWS: &[Route<u8>] = &[
        Route { methods: GET_HEAD, path: "/a", auth: Auth::Public, handler: 1 },
        Route { methods: &[Method::Delete], path: "/a", auth: Auth::Public, handler: 2 },
        Route { methods: &[Method::Get], path: "/b/{x}", auth: Auth::Admin, handler: 3 },
    ];

    #[test]
    fn lookup_finds_the_row_or_says_which_methods_the_path_has() {
        let handler = |f: Lookup<'_, '_, u8>| match f {
            Lookup::Route(r, p) => Some((r.handler, p.get("x").to_string())),
            _ => None,
        };
        assert_eq!(handler(lookup(ROWS, "HEAD", "/a")), Some((1, String::new())));
        assert_eq!(handler(lookup(ROWS, "DELETE", "/a")), Some((2, String::new())));
        assert_eq!(handler(lookup(ROWS, "GET", "/b/7")), Some((3, "7".to_string())));
        for (method, path, auth, allow) in [
            ("POST", "/a", Auth::Public, vec!["GET", "HEAD", "DELETE"]),
            ("PATCH", "/a", Auth::Public, vec!["GET", "HEAD", "DELETE"]),
            ("get", "/a", Auth::Public, vec!["GET", "HEAD", "DELETE"]),
            ("HEAD", "/b/7", Auth::Admin, vec!["GET"]),
        ] {
            match lookup(ROWS, method, path) {
                Lookup::WrongMethod { auth: a, allow: m } => assert_eq!((a, m), (auth, allow), "{method} {path}"),
                _ => panic!("{method} {path}: expected 405"),
            }
        }
        assert!(matches!(lookup(ROWS, "GET", "/c"), Lookup::NotFound));
        assert_eq!(lookup(ROWS, "GET", "/c").auth(), None);
        assert_eq!(lookup(ROWS, "PUT", "/b/1").auth(), Some(Auth::Admin));
    }

    #[test]
    fn methods_round_trip() {
        for m in [Method::Get, Method::Head, Method::Post, Method::Put, Method::Delete] {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
        assert_eq!(Method::parse("PATCH"), None);
        assert_eq!(Method::parse("OPTIONS"), None);
    }
}
