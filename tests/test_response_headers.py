"""Response headers: orc's quicker header check (orc/api/header_check.py) still lets no header
value inject a header line."""

from __future__ import annotations

from sanic.response import json

from orc.api import header_check


def test_a_line_break_or_nul_in_a_header_cannot_add_a_header_line():
    header_check.install()
    response = json(
        {"ok": True},
        headers={
            "X-Request-ID": "abc\r\nSet-Cookie: orc_session=stolen\x00",
            "X-Evil\r\nName": "1",
            "Retry-After": "5",
        },
    )
    headers = list(response.processed_headers)
    assert (b"X-Request-ID", b"abcSet-Cookie: orc_session=stolen") in headers
    assert (b"X-EvilName", b"1") in headers
    assert (b"Retry-After", b"5") in headers
    assert not any(b"\r" in name + value or b"\n" in name + value for name, value in headers)
