"""Is a configured secret strong enough to guard the server? Length, guessability, placeholders.

Guessability is zxcvbn's estimate (Dropbox's password strength model): unlike a count of
characters it sees repeats (``tok-xxxx…``), sequences (``abcd…0123``), keyboard walks and
words, which is how hand-made tokens are weak. Random tokens (``orc token generate``,
``openssl rand -hex 16`` or longer) are far above the bar.
"""

from __future__ import annotations

MIN_LENGTH = 32
# About 80 bits: out of reach of online guessing and of offline guessing at scale.
MIN_GUESSES_LOG10 = 24
# zxcvbn's matching grows faster than linearly with length: it rates pieces of this size,
# and only the first few (a prefix that is hard to guess makes the whole token so).
CHUNK_CHARS = 64
MAX_CHUNKS = 4

# Every placeholder orc's files or the deployment spec ship where a secret belongs,
# normalised (lower case, no surrounding space or quotes).
PLACEHOLDERS = frozenset(
    {
        "replace-with-the-output-of-orc-token-generate",
        "replace-with-output-of-orc-token-generate",
        "your-secure-token-here",
        "your-secret-token",
        "change-me",
        "changeme",
        "secret",
        "token",
    }
)


def _normalise(value: str) -> str:
    return value.strip().strip("'\"").lower()


def is_placeholder(value: str) -> bool:
    """True when ``value`` is a placeholder orc ships (or one of them with its ``<>``)."""
    return _normalise(value).strip("<>") in PLACEHOLDERS


def guesses_log10(value: str) -> float:
    """zxcvbn's estimate of log10(guesses) needed to find ``value`` (a lower bound past 256)."""
    from zxcvbn import zxcvbn  # loaded at start-up checks only

    chunks = [value[i : i + CHUNK_CHARS] for i in range(0, len(value), CHUNK_CHARS)]
    # Guessing the pieces one after another multiplies the guesses: the logs add up.
    return sum(float(zxcvbn(chunk)["guesses_log10"]) for chunk in chunks[:MAX_CHUNKS])


def weakness(value: str) -> str | None:
    """Why ``value`` is too weak for a server secret, or None when it will do."""
    if is_placeholder(value):
        return "is a placeholder from an example, not a secret"
    if len(value) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters"
    if guesses_log10(value) < MIN_GUESSES_LOG10:
        return "is too easy to guess (repeated characters, sequences or words)"
    return None
