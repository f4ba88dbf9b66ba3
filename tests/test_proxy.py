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


IMDS = "http://169.254.169.254/latest/api/token"
SSM = "https://ssm.us-east-1.amazonaws.com/"


def test_only_http_proxy_reaches_imds_https_proxy_alone_does_not() -> None:
    # Go's proxyForURL picks the proxy by the URL's scheme (httpproxy proxy.go:127-139):
    # IMDS is an http URL, so https_proxy never applies to it.
    https_only = ProxySettings.from_environ({"https_proxy": "http://10.0.0.1:3128"}, "test")
    assert https_only.route(IMDS).kind == "direct"
    assert https_only.proxy_for(SSM) == parse_proxy_url("http://10.0.0.1:3128")
    with_http = ProxySettings.from_environ({"http_proxy": "http://10.0.0.1:3128"}, "test")
    route = with_http.route(IMDS)
    assert route.kind == "proxy" and route.proxy is not None and route.proxy.host == "10.0.0.1"
    exempt = ProxySettings.from_environ(
        {"HTTP_PROXY": "http://10.0.0.1:3128", "NO_PROXY": "169.254.169.254"}, "test"
    )
    assert exempt.route(IMDS).kind == "direct" and "169.254.169.254" in exempt.route(IMDS).reason


def test_upper_case_wins_for_every_variable_and_empty_counts_as_unset() -> None:
    env = {
        "HTTP_PROXY": "http://upper:1",
        "http_proxy": "http://lower:2",
        "NO_PROXY": "upper.example",
        "no_proxy": "169.254.169.254",
        "HTTPS_PROXY": "",  # empty: Go's getEnvAny goes on to the lower-case name
        "https_proxy": "http://lower:3",
    }
    settings = ProxySettings.from_environ(env, "test")
    assert settings.http_proxy == "http://upper:1" and settings.https_proxy == "http://lower:3"
    assert settings.no_proxy == "upper.example" and settings.no_proxy_name == "NO_PROXY"
    # The lower-case no_proxy is shadowed, so IMDS goes to the proxy after all.
    assert settings.route(IMDS).kind == "proxy"


def test_request_method_makes_go_refuse_http_proxy_only() -> None:
    env = {"http_proxy": "http://p:3128", "https_proxy": "http://p:3128", "REQUEST_METHOD": "GET"}
    settings = ProxySettings.from_environ(env, "test")
    route = settings.route(IMDS)
    assert route.kind == "refused" and "REQUEST_METHOD" in route.reason
    assert settings.proxy_for(IMDS) is None
    assert settings.route(SSM).kind == "proxy"  # https is not affected (proxy.go:129-136)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("proxy.corp:3128", "http://proxy.corp:3128"),  # no scheme: http
        ("proxy.corp", "http://proxy.corp:80"),
        ("https://proxy.corp", "https://proxy.corp:443"),
        ("socks5://proxy.corp", "socks5://proxy.corp:1080"),
        ("HTTP://Proxy.Corp:8080", "http://Proxy.Corp:8080"),  # scheme lower-cased, host kept
        # Not http/https/socks5 (Go 1.19): re-read as "http://" + value, whose host is the
        # scheme's name. The agent then tries to reach a host called "socks5h".
        ("socks5h://proxy.corp:1080", "http://socks5h:80"),
        ("http://proxy.corp:port", "http://http:80"),  # a bad port: the same re-reading
        ("http://[fd00::1]:3128", "http://[fd00::1]:3128"),
    ],
)
def test_proxy_values_read_as_go_parse_proxy_does(value: str, shown: str) -> None:
    assert parse_proxy_url(value).display() == shown


def test_a_proxy_go_cannot_parse_is_ignored_and_the_agent_goes_direct() -> None:
    settings = ProxySettings(https_proxy=" http://proxy.corp:3128")  # leading space
    route = settings.route(SSM)
    assert route.kind == "direct" and "ignored" in route.reason
    with pytest.raises(ValueError) as caught:
        parse_proxy_url(" http://user:s3cret@proxy.corp:3128")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("", "::1", 443, True),  # loopback, any spelling
        ("", "::ffff:127.0.0.1", 443, True),
        ("", "127.1.2.3", 443, True),
        ("", "LOCALHOST", 443, False),  # Go compares "localhost" before lower-casing
        ("[fd00::1]:443", "fd00::1", 443, True),  # [ip]:port
        ("[fd00::1]:443", "fd00::1", 8443, False),
        ("[fd00::1]", "fd00::1", 443, False),  # brackets without a port: a domain entry
        ("fd00::/8", "fd00::1", 443, True),
        ("169.254.169.254:80", "169.254.169.254", 80, True),
        ("169.254.169.254:8080", "169.254.169.254", 80, False),
        ("169.254.0.0/16", "169.254.169.254", 1, True),  # CIDRs ignore the port
        # Domain entries are compared with IP literals as text in this Go version.
        ("169.254", "169.254.169.254", 80, True),
        ("amazonaws.com:", "ssm.us-east-1.amazonaws.com", 443, True),  # empty port: any
        ("*", "anything.example", 1, True),
        (":443", "example.com", 443, False),  # no host part: ignored
    ],
)
def test_no_proxy_edge_cases_like_go(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    settings = ProxySettings(https_proxy="http://proxy:3128", no_proxy=no_proxy)
    assert (settings.bypasses(host, port) is not None) is bypassed


def test_websocket_urls_use_the_https_proxy_and_other_schemes_none() -> None:
    settings = ProxySettings(https_proxy="http://p:3128", http_proxy="http://p:3128")
    assert settings.route("wss://ssmmessages.us-east-1.amazonaws.com/v1/control").kind == "proxy"
    assert settings.route("ftp://example.com/").kind == "direct"
