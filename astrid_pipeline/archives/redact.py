"""Secrets out of everything we store or log: one function, :func:`strip_secrets`.

Archive URLs can carry credentials: ``https://user:pass@host/...``, tokens in
the query (``?token=...``, ``access_token``, ``api_key``...), or the
signature of a pre-signed cloud URL (``X-Amz-Signature``, ``X-Amz-Credential``,
Google's ``X-Goog-*``, Azure's ``sig``) that MAST and other archives redirect
to. Such a URL must never reach a FITS header (``ARCHURL``, ``HISTORY``), the
observation inventory, a cache record, an error message or a log line.

:func:`strip_secrets` takes a URL or any text that contains URLs or
``name=value`` pairs (an exception message, a query description) and returns
it with the user-info part of every URL removed and the value of every
secret-looking parameter replaced by ``***``. Everything else is kept byte
for byte, so a stripped URL still shows the host, the path and the
harmless parameters (position, filter, size).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

#: parameter names whose value is a secret (compared lower-case, after percent-decoding)
SECRET_NAMES = frozenset({
    "token", "access_token", "refresh_token", "id_token", "auth_token", "api_token", "mast_token",
    "api_key", "apikey", "key", "access_key", "secret", "secret_key", "client_secret",
    "password", "passwd", "pwd", "pass", "auth", "authorization", "sig", "signature", "credential",
    "credentials", "session", "sessionid", "session_id", "jwt", "code",
    "googleaccessid", "awsaccesskeyid", "security-token",
})
#: name prefixes of cloud pre-signed URL parameters (all of them are treated as secret)
SECRET_PREFIXES = ("x-amz-", "x-goog-")
#: name fragments that mark a secret whatever the rest of the name is (``my_api_key``, ``mastToken``)
SECRET_FRAGMENTS = ("token", "secret", "passw", "apikey", "api_key", "signature", "credential")

# user:pass@ (or user@) right after the scheme of any URL in the text
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^/\s@?#'\"<>]*@)")
# name=value where name follows ? & ; # or whitespace or a quote or the start of the text
_PAIR = re.compile(r"(?P<lead>(?:^|[?&;#\s'\"(,]))(?P<name>[A-Za-z0-9_.%\-]+)(?P<eq>=)(?P<value>[^&;#\s'\"<>),]*)")
# an Authorization header (or "Bearer xyz" / "token xyz") quoted in a message
_AUTH_HEADER = re.compile(r"(?i)(?P<head>\bauthorization['\"]?\s*[:=]\s*['\"]?)(?P<value>[^'\"\r\n,}]+)")
_BEARER = re.compile(r"(?i)(?P<head>\b(?:bearer|token)\s+)(?P<value>[A-Za-z0-9._~+/\-]{16,}=*)")


def is_secret_name(name: str) -> bool:
    """True when a query or form parameter called ``name`` carries a credential."""
    n = unquote(name).strip().lower()
    return n in SECRET_NAMES or n.startswith(SECRET_PREFIXES) or any(f in n for f in SECRET_FRAGMENTS)


def _pair(m: re.Match) -> str:
    if not is_secret_name(m.group("name")) or not m.group("value"):
        return m.group(0)
    return f"{m.group('lead')}{m.group('name')}={MASK}"


def strip_secrets(text) -> str:
    """``text`` (a URL, or any message containing URLs) without credentials or tokens.

    >>> strip_secrets("https://me:pw@mast.stsci.edu/file?uri=mast:HST/x.fits&token=abc")
    'https://mast.stsci.edu/file?uri=mast:HST/x.fits&token=***'
    """
    if text is None:
        return ""
    s = str(text)
    if not s:
        return s
    s = _USERINFO.sub(lambda m: m.group("scheme"), s)
    s = _PAIR.sub(_pair, s)
    s = _AUTH_HEADER.sub(lambda m: f"{m.group('head')}{MASK}", s)
    return _BEARER.sub(lambda m: f"{m.group('head')}{MASK}", s)
