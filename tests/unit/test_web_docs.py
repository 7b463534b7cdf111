"""/docs and /redoc name only files on the API's own origin, every one of them is served, and each page's
Content-Security-Policy lets the browser load nothing from elsewhere (the browser test renders both)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from aromatrack.services.api import Services, create_app
from aromatrack.services.docs import REDOC_LOGO_URL
from aromatrack.services.store import Store


@pytest.fixture
def client(tmp_path) -> TestClient:
    return TestClient(create_app(Services(Store(tmp_path / "api.sqlite3"))))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_only_files_of_its_own_origin(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert not re.search(r"https?:|\*", policy)
    assert "googleapis" not in response.text and "cdn" not in response.text
    urls = re.findall(r'(?:src|href|spec-url|data-openapi-url)="([^"]+)"', response.text)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls)
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_the_served_redoc_asks_no_cdn_for_its_logo(client: TestClient) -> None:
    page = client.get("/redoc").text
    [script] = re.findall(r'<script src="([^"]+)"', page)
    served = client.get(script)
    assert served.headers["content-type"].startswith("text/javascript")
    assert REDOC_LOGO_URL not in served.content and b"Redoc" in served.content


def test_swagger_ui_starts_from_a_file_without_the_public_validator(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "<script>" not in page  # no inline script: the policy refuses them
    init = client.get("/static/swagger-init.js").text
    assert "validatorUrl: null" in init and "dataset.openapiUrl" in init
    assert client.get("/openapi.json").json()["info"]["title"] == "Aromatrack API"
