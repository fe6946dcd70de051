"""Verifies edgeintel's X-Intel-Signature at the origin (Python 3.8+, stdlib only).

Use ``verify()`` anywhere, ``wsgi_middleware()`` for WSGI apps (Flask, Django)
or ``asgi_middleware()`` for ASGI apps (Starlette, FastAPI).
"""
import hashlib
import hmac
import re
import time

# The headers edgeintel signs, in the order it sets them.
ORDER = ["x-risk-score", "x-risk-level", "x-risk-reasons", "x-threat-score", "x-reputation-score",
         "x-geo-country", "x-geo-city", "x-geo-region", "x-geo-lat", "x-geo-lon", "x-geo-asn", "x-geo-colo",
         "x-intel-status", "x-intel", "x-intel-client-ip"]
_SIG = re.compile(r"^t=(\d+),v1=([0-9a-f]{64})$")


def verify(method, url, headers, key, max_age_seconds=300, now=None):
    """True when ``headers`` (lower-case names) carry a valid, fresh signature."""
    m = _SIG.match(headers.get("x-intel-signature", ""))
    if not m:
        return False
    t = int(m.group(1))
    if abs((time.time() if now is None else now) - t) > max_age_seconds:
        return False
    canonical = f"{method}\n{url}\n{t}\n" + "".join(f"{n}:{headers[n]}\n" for n in ORDER if n in headers)
    expected = hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, m.group(2))


def _wsgi_headers(environ):
    return {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}


def wsgi_middleware(app, key, max_age_seconds=300):
    """Wraps a WSGI app: 401 unless the request came through edgeintel."""
    def wrapped(environ, start_response):
        headers = _wsgi_headers(environ)
        query = environ.get("QUERY_STRING")
        url = f"{environ.get('wsgi.url_scheme', 'https')}://{environ.get('HTTP_HOST', '')}{environ.get('PATH_INFO', '')}" + (f"?{query}" if query else "")
        if verify(environ.get("REQUEST_METHOD", "GET"), url, headers, key, max_age_seconds):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"missing or invalid X-Intel-Signature"]
    return wrapped


def asgi_middleware(app, key, max_age_seconds=300):
    """Wraps an ASGI app: 401 unless the request came through edgeintel."""
    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode()
        url = f"{scope.get('scheme', 'https')}://{headers.get('host', '')}{scope['path']}" + (f"?{query}" if query else "")
        if verify(scope["method"], url, headers, key, max_age_seconds):
            return await app(scope, receive, send)
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"missing or invalid X-Intel-Signature"})
    return wrapped


if __name__ == "__main__":
    # Used by the tests: reads {"method","url","headers","key","now"?} as JSON on stdin.
    import json
    import sys
    a = json.load(sys.stdin)
    print("valid" if verify(a["method"], a["url"], a["headers"], a["key"], now=a.get("now")) else "invalid")
