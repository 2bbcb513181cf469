"""Every AlertProvider type against a real local HTTP receiver: Flagger's payload per service, proxy, failures."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.notifiers import NOTIFIERS, alert_wanted
from tests.activities.test_notifiers import alert, provider, run_send_alert, slack_shaped
from tests.helpers.http_receiver import HttpReceiver, RecordedRequest, ScriptedResponse


def test_every_flagger_alert_provider_type_is_registered() -> None:
    assert {"slack", "msteams", "discord", "rocket", "gchat"} <= set(NOTIFIERS)


@pytest.mark.parametrize(("severity", "theme"), [("info", "0076D7"), ("warn", "0076D7"), ("error", "FF0000")])
async def test_msteams_receives_a_message_card(receiver: HttpReceiver, severity: str, theme: str) -> None:
    teams = provider({"type": "msteams", "address": receiver.url_for("/webhookb2/abc")})

    result = await run_send_alert(alert(teams, severity, "Failed checks threshold reached 5"))

    assert result.delivered, result.message
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/webhookb2/abc")
    assert request.header("Content-Type") == "application/json"
    assert request.json == {
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": theme,
        "summary": "podinfo.test",
        "sections": [
            {
                "activityTitle": "Failed checks threshold reached 5",
                "activitySubtitle": "podinfo.test",
                "facts": [
                    {"name": "Target", "value": "Deployment/podinfo.test"},
                    {"name": "Failed checks threshold", "value": "5"},
                    {"name": "Progress deadline", "value": "600s"},
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("hook_path", "posted_path"),
    [
        ("/api/webhooks/123/tok", "/api/webhooks/123/tok/slack"),
        ("/api/webhooks/123/tok/", "/api/webhooks/123/tok/slack"),
        ("/api/webhooks/123/tok/slack", "/api/webhooks/123/tok/slack"),
        ("/api/webhooks/123/tok?wait=true", "/api/webhooks/123/tok/slack?wait=true"),
        ("/api/webhooks/123/tok/slack?wait=true", "/api/webhooks/123/tok/slack?wait=true"),
    ],
)
async def test_discord_receives_the_slack_payload_on_its_slack_endpoint(
    receiver: HttpReceiver, hook_path: str, posted_path: str
) -> None:
    discord = provider({"type": "discord", "channel": "releases", "address": receiver.url_for(hook_path)})

    result = await run_send_alert(alert(discord, "error", "Canary failed"))

    assert result.delivered, result.message
    [request] = receiver.requests
    assert request.path == posted_path
    assert request.json == slack_shaped("danger", "Canary failed", channel="releases")


@pytest.mark.parametrize(("severity", "color"), [("info", "#0076D7"), ("warn", "#0076D7"), ("error", "#FF0000")])
async def test_rocket_receives_the_slack_payload_in_rocket_colours(
    receiver: HttpReceiver, severity: str, color: str
) -> None:
    rocket = provider({"type": "rocket", "username": "canaryflow", "address": receiver.url_for("/hooks/x/y")})

    result = await run_send_alert(alert(rocket, severity, "New revision detected"))

    assert result.delivered, result.message
    assert receiver.requests[0].json == slack_shaped(color, "New revision detected", username="canaryflow")


def paragraph(text: str) -> dict[str, Any]:
    return {"widgets": [{"textParagraph": {"text": text}}]}


async def test_gchat_receives_flaggers_card(receiver: HttpReceiver) -> None:
    chat = provider({"type": "gchat", "address": receiver.url_for("/v1/spaces/AAA/messages?key=k&token=t")})

    result = await run_send_alert(alert(chat, "warn", "Canary is waiting for approval."))

    assert result.delivered, result.message
    [request] = receiver.requests
    assert request.path == "/v1/spaces/AAA/messages?key=k&token=t"
    assert request.json == {
        "cards": [
            {
                "header": {
                    "title": "Flagger",
                    "subtitle": "podinfo.test",
                    "imageUrl": "https://flagger.app/favicon.png",
                },
                "sections": [
                    paragraph("<font color=#848484><strong>Canary is waiting for approval.</strong></font>"),
                    paragraph("Target<br><font color=#848484><strong>Deployment/podinfo.test</strong></font>"),
                    paragraph("Failed checks threshold<br><font color=#848484><strong>5</strong></font>"),
                    paragraph("Progress deadline<br><font color=#848484><strong>600s</strong></font>"),
                ],
            }
        ]
    }


@pytest.mark.parametrize("service", ["msteams", "discord", "rocket", "gchat"])
async def test_only_slack_gets_the_secrets_token(receiver: HttpReceiver, secrets_dir: Path, service: str) -> None:
    (secrets_dir / "hook.yaml").write_text(f"address: {receiver.url_for('/hook')}\ntoken: tok-123\n")

    result = await run_send_alert(alert(provider({"type": service, "secretRef": {"name": "hook"}})))

    assert result.delivered, result.message
    assert receiver.requests[0].header("Authorization") is None


# --- proxy -------------------------------------------------------------------------------------------


class ForwardProxy:
    """A plain HTTP forward proxy: records the absolute-form request line and relays the request upstream."""

    def __init__(self) -> None:
        self.receiver = HttpReceiver()
        self.receiver.handler = self._relay

    def _relay(self, request: RecordedRequest) -> ScriptedResponse:
        forwarded = {k: v for k, v in request.headers.items() if k not in ("host", "proxy-connection", "connection")}
        upstream = urllib.request.Request(request.path, data=request.body, headers=forwarded, method=request.method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never loop through a proxy env
        try:
            with opener.open(upstream, timeout=5) as answer:
                return ScriptedResponse(status=answer.status, body=answer.read())
        except urllib.error.HTTPError as error:
            return ScriptedResponse(status=error.code, body=error.read())


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    with proxy.receiver:
        yield proxy


@pytest.mark.parametrize("service", ["slack", "msteams", "discord", "rocket", "gchat"])
async def test_alerts_go_through_the_providers_proxy(
    receiver: HttpReceiver, forward_proxy: ForwardProxy, service: str
) -> None:
    hook = receiver.url_for("/hook/slack")  # already Slack-compatible, so Discord posts to it unchanged
    spec = {"type": service, "address": hook, "proxy": forward_proxy.receiver.url}

    result = await run_send_alert(alert(provider(spec), "error", "Canary failed"))

    assert result.delivered, result.message
    [proxied] = forward_proxy.receiver.requests
    assert proxied.method == "POST"
    assert proxied.path == hook  # absolute-form request line: the proxy was asked to fetch the hook
    [delivered] = receiver.requests
    assert delivered.path == "/hook/slack"
    assert delivered.body == proxied.body


async def test_unreachable_proxy_is_not_delivered(receiver: HttpReceiver, closed_port: int) -> None:
    spec = {"type": "msteams", "address": receiver.url_for("/hook"), "proxy": f"http://127.0.0.1:{closed_port}"}

    result = await run_send_alert(alert(provider(spec)))

    assert not result.delivered
    assert "sending notification failed" in result.message
    assert receiver.requests == []


# --- failures never leak the address -----------------------------------------------------------------


@pytest.mark.parametrize("service", ["msteams", "discord", "rocket", "gchat"])
async def test_receiver_error_is_not_delivered_and_hides_the_secret_address(
    receiver: HttpReceiver, secrets_dir: Path, service: str
) -> None:
    hook = receiver.url_for("/hooks/s3cr3t-path/slack")
    (secrets_dir / "hook.yaml").write_text(f"address: {hook}\n")
    receiver.script(ScriptedResponse(status=403, body=f"forbidden: {hook}"))

    result = await run_send_alert(alert(provider({"type": service, "secretRef": {"name": "hook"}})))

    assert not result.delivered
    assert "bad response 403" in result.message
    assert "s3cr3t-path" not in result.message


async def test_timeout_is_not_delivered(receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.notifiers import base

    monkeypatch.setattr(base, "NOTIFICATION_TIMEOUT_SECONDS", 0.2)
    receiver.script(ScriptedResponse(status=200, delay_seconds=2))

    result = await run_send_alert(alert(provider({"type": "gchat", "address": receiver.url_for("/hook")})))

    assert not result.delivered
    assert "timed out" in result.message


# --- severity filter, end to end per provider ------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "sent"),
    [
        ("info", ["info", "warn", "error"]),
        ("warn", ["warn", "error"]),
        ("error", ["error"]),
        ("", ["info", "warn", "error"]),
    ],
)
async def test_only_wanted_severities_reach_the_service(
    receiver: HttpReceiver, configured: str, sent: list[str]
) -> None:
    teams = provider({"type": "msteams", "address": receiver.url_for("/hook")})
    for severity in ("info", "warn", "error"):
        if alert_wanted(configured, severity):
            await run_send_alert(alert(teams, severity, f"{severity} event"))

    assert [request.json["sections"][0]["activityTitle"] for request in receiver.requests] == [
        f"{severity} event" for severity in sent
    ]
