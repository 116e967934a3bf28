"""Host and URL helpers: parse `OLLAMA_HOST` the way Ollama's Python client does, and
decide whether a URL points at this machine."""

from __future__ import annotations

import ipaddress
import urllib.parse

__all__ = ["display_host", "is_loopback_url", "parse_ollama_host"]

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


def display_host(url: str) -> str:
    """The host[:port] part of a URL, for route names and messages.

    >>> display_host('http://127.0.0.1:11434')
    '127.0.0.1:11434'
    >>> display_host('https://api.deepseek.com/beta')
    'api.deepseek.com'
    """
    return urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1]
