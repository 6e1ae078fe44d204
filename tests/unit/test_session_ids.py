"""Tomcat's id format: 32 uppercase hex from 16 random bytes, `-n1` infix, `.route` suffix."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysession.ids import format_session_id, new_session_id, parse_session_id, with_route


def test_new_id_is_tomcat_format() -> None:
    sid = new_session_id()
    assert re.fullmatch(r"[0-9A-F]{32}", sid)
    assert re.fullmatch(r"[0-9A-F]{32}\.node1", new_session_id("node1"))
    assert re.fullmatch(r"[0-9A-F]{32}-n1\.node1", new_session_id("node1", "n1"))


def test_ids_are_unique() -> None:
    ids = {new_session_id() for _ in range(2000)}
    assert len(ids) == 2000


def test_parse_and_rebind_route() -> None:
    p = parse_session_id("4DD0340CE6294FF2BBE802CD4CD039EC-n2.node1")
    assert p is not None and p.base == "4DD0340CE6294FF2BBE802CD4CD039EC"
    assert (p.node_id, p.route) == ("n2", "node1")
    assert with_route("4DD0340CE6294FF2BBE802CD4CD039EC.node1", "node2") == \
        "4DD0340CE6294FF2BBE802CD4CD039EC.node2"


@pytest.mark.parametrize("forged", ["", "abc", "4dd0340ce6294ff2bbe802cd4cd039ec",
                                    "../../etc/passwd", "4DD0340CE6294FF2BBE802CD4CD039EC/x",
                                    "4DD0340CE6294FF2BBE802CD4CD039EC.node1;x=1"])
def test_forged_ids_do_not_parse(forged: str) -> None:
    assert parse_session_id(forged) is None


@given(st.binary(min_size=16, max_size=16),
       st.one_of(st.none(), st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)),
       st.one_of(st.none(), st.from_regex(r"n[0-9]{1,2}", fullmatch=True)))
def test_format_parse_roundtrip(raw: bytes, route: str | None, node: str | None) -> None:
    sid = format_session_id(raw.hex().upper(), node, route)
    p = parse_session_id(sid)
    assert p is not None and (p.base, p.node_id, p.route) == (raw.hex().upper(), node, route)
