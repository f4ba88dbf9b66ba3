from __future__ import annotations

import pytest

from ssmdiag.proxy import ProxySettings, parse_proxy_url


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("*", "ssm.us-east-1.amazonaws.com", True),
        ("amazonaws.com", "ssm.us-east-1.amazonaws.com", True),
        ("amazonaws.com", "amazonaws.com", True),
        (".amazonaws.com", "amazonaws.com", False),  # leading dot: subdomains only
        ("*.amazonaws.com", "ssm.us-east-1.amazonaws.com", True),
        ("example.com", "notexample.com", False),
        ("169.254.169.254", "169.254.169.254", True),
        ("169.254.0.0/16", "169.254.169.254", True),
        ("10.0.0.0/8", "ssm.us-east-1.amazonaws.com", False),  # CIDRs match IP literals only
        ("ssm.us-east-1.amazonaws.com:8443", "ssm.us-east-1.amazonaws.com", False),
        ("", "localhost", True),  # never proxied
        ("", "127.0.0.1", True),
        (" AMAZONAWS.com , other", "ssm.us-east-1.amazonaws.com", True),
    ],
)
def test_no_proxy_matches_like_go(no_proxy: str, host: str, bypassed: bool) -> None:
    settings = ProxySettings(https_proxy="http://proxy:3128", no_proxy=no_proxy)
    assert (settings.bypasses(host, 443) is not None) is bypassed
    assert (settings.proxy_for(f"https://{host}/") is None) is bypassed


def test_upper_case_wins_and_http_proxy_is_not_used_for_https() -> None:
    env = {
        "HTTPS_PROXY": "http://upper:1",
        "https_proxy": "http://lower:2",
        "no_proxy": "x.example",
    }
    settings = ProxySettings.from_environ(env, "test")
    assert settings.https_proxy == "http://upper:1" and settings.no_proxy == "x.example"
    only_http = ProxySettings.from_environ({"http_proxy": "http://p:3128"}, "test")
    assert only_http.proxy_for("https://ssm.us-east-1.amazonaws.com/") is None


def test_proxy_credentials_never_show() -> None:
    proxy = parse_proxy_url("user:s3cret@proxy.corp:8080")
    assert proxy.display() == "http://***@proxy.corp:8080" and "s3cret" not in proxy.display()
