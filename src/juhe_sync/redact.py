"""Keeping secrets out of what juhe-sync prints: database passwords, tokens and SaaS secrets.

Two layers: :func:`safe_url` for the places that show a database URL on purpose (the banner,
errors naming the database), and :class:`SecretFilter` on every log handler, which masks any
configured secret wherever it turns up in a log line (a driver's error text, a traceback).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

# scheme://user:password@host: the password is everything between the first ':' after '//' and
# the last '@' before the host, so passwords holding '@' or ':' are masked whole.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^\s/]*)(?P<tail>@)")
# key=value connection strings and URL query parameters.
_PARAM_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'[^']*'|[^\s&']+)", re.IGNORECASE)


def safe_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) masked."""
    url = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], url)
    return _PARAM_PASSWORD.sub(lambda m: m["head"] + MASK, url)


def url_secrets(url: str) -> list[str]:
    """The literal secrets in a database URL, as they may appear in a driver's error text."""
    found = []
    for pattern in (_URL_PASSWORD, _PARAM_PASSWORD):
        for match in pattern.finditer(url):
            secret = match["secret"].strip("'")
            if secret:
                found += [secret, unquote(secret)]
    return found


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every URL password and every one of ``secrets`` replaced by ``***``."""
    text = safe_url(text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """Masks secrets in every record that passes through the handler it is attached to."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        masked = mask(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_text:
            record.exc_text = mask(record.exc_text, self.secrets)
        return True
