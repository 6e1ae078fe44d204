"""The manager page in headless Chromium (playwright driving Debian's /usr/bin/chromium):
a drain action through the page's form, and refusals without credentials or CSRF token."""

from __future__ import annotations

import base64
import http.client
import os
import urllib.parse

import pytest

from tests.integration.test_lb_operating import admin_addr, lb_conf, members_conf
from tests.integration.test_lb_support import free_ports, get, make_lab, nginx_spec, pylb_spec

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed")]

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def test_manager_page_drain_in_chromium(start_lab) -> None:
    ports = free_ports(2)
    sup = start_lab(make_lab("lb-browser", [nginx_spec("nginx", members_conf(ports), echo=True),
                                            pylb_spec("lb", lb_conf(ports), after=["nginx"])]))
    host, port = admin_addr(sup)
    base = f"http://{host}:{port}"
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30000)
        try:
            # without credentials: refused
            anon = browser.new_context()
            page = anon.new_page()
            with pytest.raises(playwright_api.Error, match="AUTH"):
                page.goto(f"{base}/manager")  # Chromium gives up on the 401 challenge
            assert anon.request.get(f"{base}/manager").status == 401
            anon.close()
            ctx = browser.new_context(http_credentials={"username": "admin",
                                                        "password": "s3cret"})
            page = ctx.new_page()
            resp = page.goto(f"{base}/manager")
            assert resp is not None and resp.status == 200
            assert page.inner_text("#row-app-m1 .state") == "active"
            page.select_option("#state-app-m1", "drain")
            page.click("#save-app-m1")
            page.wait_for_selector("#msg")
            assert page.inner_text("#msg") == "saved"
            assert page.inner_text("#row-app-m1 .state") == "drain"
            # a form post from the page without the token (forged): refused
            page.evaluate("document.querySelector('#f-app-m2 input[name=csrf]').value = 'x'")
            page.select_option("#state-app-m2", "stopped")
            with page.expect_navigation() as nav:
                page.click("#save-app-m2")
            assert nav.value is not None and nav.value.status == 403
            ctx.close()
        finally:
            browser.close()
    # the drain took effect on the data path; m2 was not stopped
    assert {get(sup.address("lb"), "/")[2] for _ in range(8)} == {b"m2"}
    # and a credentialed form post without any csrf field is refused too
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("POST", "/manager", body=urllib.parse.urlencode(
        {"upstream": "app", "member": "m1", "state": "active"}),
        headers={"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode(),
                 "Content-Type": "application/x-www-form-urlencoded"})
    assert conn.getresponse().status == 403
    conn.close()
