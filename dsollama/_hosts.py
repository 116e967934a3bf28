"""Host and URL helpers: parse `OLLAMA_HOST` the way Ollama's Python client does, and
decide whether a URL points at this machine."""

from __future__ import annotations

import ipaddress
import urllib.parse

__all__ = [
    "display_host",
    "is_loopback_url",
    "key_may_travel_to",
    "normalise_base_url",
    "parse_ollama_host",
]

DEFAULT_OLLAMA_PORT = 11434


def parse_ollama_host(host: str | None) -> str:
    """Normalise an Ollama host string to a base URL, as ``ollama.Client`` does.

    >>> parse_ollama_host(None)
    'http://127.0.0.1:11434'
    >>> parse_ollama_host('')
    'http://127.0.0.1:11434'
    >>> parse_ollama_host('1.2.3.4')
    'http://1.2.3.4:11434'
    >>> parse_ollama_host(':56789')
    'http://127.0.0.1:56789'
    >>> parse_ollama_host('http://example.com')
    'http://example.com:80'
    >>> parse_ollama_host('https://example.com')
    'https://example.com:443'
    >>> parse_ollama_host('example.com:5678/path/')
    'http://example.com:5678/path'
    >>> parse_ollama_host('[::1]')
    'http://[::1]:11434'
    >>> parse_ollama_host('http://[::1]:8080')
    'http://[::1]:8080'
    >>> parse_ollama_host('0.0.0.0')
    'http://0.0.0.0:11434'
    """
    host = (host or "").strip()
    scheme, rest = "http", host
    if "://" in host:
        scheme, rest = host.split("://", 1)
    default_port = (
        {"http": 80, "https": 443}.get(scheme, DEFAULT_OLLAMA_PORT)
        if "://" in host
        else DEFAULT_OLLAMA_PORT
    )
    split = urllib.parse.urlsplit(f"{scheme}://{rest}")
    hostname = split.hostname or "127.0.0.1"
    try:
        port = split.port or default_port
    except ValueError:
        port = default_port
    if ":" in hostname:  # IPv6 literal
        hostname = f"[{hostname}]"
    path = split.path.rstrip("/")
    return f"{scheme}://{hostname}:{port}{path}"


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine (127.0.0.0/8, ::1 or localhost).

    >>> is_loopback_url('http://127.0.0.1:8080/v1')
    True
    >>> is_loopback_url('http://localhost')
    True
    >>> is_loopback_url('http://[::1]:9/')
    True
    >>> is_loopback_url('http://10.0.0.2')
    False
    >>> is_loopback_url('https://api.deepseek.com')
    False
    """
    hostname = (urllib.parse.urlsplit(url).hostname or "").lower()
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalise_base_url(url: str) -> str:
    """A base URL that a key may be attached to, parsed strictly and spelt one way.

    Scheme and host are lower-cased (``HTTP://Host`` is plain HTTP all the same), the
    whitespace an environment variable picks up is stripped, and a trailing slash dropped.
    Anything that would make the destination ambiguous is refused with a `ValueError`
    whose message never repeats the URL (it may hold a password): another scheme,
    no host, credentials, a query or fragment, or spaces and control characters inside.

    >>> normalise_base_url("  HTTPS://API.DeepSeek.com/v1/ ")
    'https://api.deepseek.com/v1'
    >>> normalise_base_url("http://[::1]:8000")
    'http://[::1]:8000'
    >>> normalise_base_url("https://user:pw@api.example.com")
    Traceback (most recent call last):
    ...
    ValueError: the URL carries credentials (user:password@); put the key in its environment variable instead
    """
    text = url.strip()
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError("the URL contains spaces or control characters")
    try:
        split = urllib.parse.urlsplit(text)
        port = split.port
    except ValueError:
        raise ValueError("the URL does not parse (check the host and port)") from None
    scheme = split.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("the URL must start with https:// (or http:// for this machine)")
    if "@" in split.netloc:
        raise ValueError(
            "the URL carries credentials (user:password@); put the key in its environment variable instead"
        )
    if split.query or split.fragment or text.endswith(("?", "#")):
        raise ValueError("the URL has a query or fragment; give the API root only")
    hostname = (split.hostname or "").lower()
    if not hostname:
        raise ValueError("the URL has no host")
    host = f"[{hostname}]" if ":" in hostname else hostname
    netloc = f"{host}:{port}" if port is not None else host
    return f"{scheme}://{netloc}{split.path.rstrip('/')}"


def key_may_travel_to(url: str) -> bool:
    """May an API key be sent to this URL? Only over HTTPS, or plain HTTP to this machine.

    Parses the URL rather than comparing prefixes, so case, whitespace and credentials
    cannot disguise plain HTTP or the real host.

    >>> key_may_travel_to("https://api.deepseek.com")
    True
    >>> key_may_travel_to("HTTP://api.deepseek.com")
    False
    >>> key_may_travel_to("http://127.0.0.1:8080/v1")
    True
    >>> key_may_travel_to("http://127.0.0.1@evil.example/")
    False
    """
    try:
        split = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return False
    scheme = split.scheme.lower()
    if scheme == "https":
        return True
    return scheme == "http" and is_loopback_url(url.strip())


def display_host(url: str) -> str:
    """The host[:port] part of a URL, for route names and messages.

    >>> display_host('http://127.0.0.1:11434')
    '127.0.0.1:11434'
    >>> display_host('https://api.deepseek.com/beta')
    'api.deepseek.com'
    """
    return urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1]
