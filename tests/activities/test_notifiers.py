"""The alert activity and the Slack notifier against a real local HTTP server; the severity filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.contracts import Alert, AlertResult
from activities.notifiers import NOTIFIERS, NotifierNotRegistered, alert_wanted, get_notifier
from activities.notifiers.activity import send_alert
from canaryflow.spec import AlertProvider
from tests.helpers.http_receiver import HttpReceiver, ScriptedResponse

FIELDS = {"Target": "Deployment/podinfo.test", "Failed checks threshold": "5", "Progress deadline": "600s"}

SLACK_FIELDS = [
    {"title": "Target", "value": "Deployment/podinfo.test", "short": False},
    {"title": "Failed checks threshold", "value": "5", "short": False},
    {"title": "Progress deadline", "value": "600s", "short": False},
]


def slack_shaped(color: str, message: str, channel: str = "general", username: str = "flagger") -> dict[str, Any]:
    """Flagger's Slack payload for `alert(...)`; Discord and Rocket.Chat receive the same shape."""
    return {
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [
            {
                "color": color,
                "author_name": "podinfo.test",
                "text": message,
                "mrkdwn_in": ["text"],
                "fields": SLACK_FIELDS,
            }
        ],
    }


def provider(spec: dict[str, Any], namespace: str = "flagger") -> AlertProvider:
    return AlertProvider.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": "on-call", "namespace": namespace},
            "spec": spec,
        }
    )


def alert(on: AlertProvider, severity: str = "info", message: str = "New revision detected") -> Alert:
    return Alert.model_validate(
        {
            "canary_name": "podinfo",
            "canary_namespace": "test",
            "provider": on,
            "severity": severity,
            "message": message,
            "fields": FIELDS,
        }
    )


async def run_send_alert(to_send: Alert) -> AlertResult:
    return await ActivityEnvironment().run(send_alert, to_send)


# --- Slack end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "color"), [("info", "good"), ("warn", "good"), ("error", "danger")])
async def test_slack_receives_flaggers_payload(receiver: HttpReceiver, severity: str, color: str) -> None:
    slack = provider(
        {
            "type": "slack",
            "channel": "on-call-alerts",
            "username": "canaryflow",
            "address": receiver.url_for("/hook"),
        }
    )

    result = await run_send_alert(alert(slack, severity, "Failed checks threshold reached 5"))

    assert result.delivered, result.message
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Authorization") is None
    assert request.json == slack_shaped(
        color, "Failed checks threshold reached 5", channel="on-call-alerts", username="canaryflow"
    )


async def test_slack_defaults_channel_and_username_like_flagger(receiver: HttpReceiver) -> None:
    await run_send_alert(alert(provider({"type": "slack", "address": receiver.url_for("/")})))

    body = receiver.requests[0].json
    assert (body["channel"], body["username"]) == ("general", "flagger")


async def test_address_and_token_come_from_the_secret_in_the_providers_namespace(
    receiver: HttpReceiver, secrets_dir: Path
) -> None:
    (secrets_dir / "flagger").mkdir()
    (secrets_dir / "flagger" / "slack-bot.yaml").write_text(
        f"address: {receiver.url_for('/api/chat.postMessage')}\ntoken: xoxb-123\n"
    )

    result = await run_send_alert(alert(provider({"type": "slack", "secretRef": {"name": "slack-bot"}})))

    assert result.delivered, result.message
    [request] = receiver.requests
    assert request.path == "/api/chat.postMessage"
    assert request.header("Authorization") == "Bearer xoxb-123"


async def test_slack_api_refusal_in_a_200_answer_is_not_delivered(receiver: HttpReceiver, secrets_dir: Path) -> None:
    (secrets_dir / "slack-bot.yaml").write_text(f"address: {receiver.url_for('/')}\ntoken: xoxb-123\n")
    receiver.script(ScriptedResponse(status=200, body={"ok": False, "error": "channel_not_found"}))

    result = await run_send_alert(alert(provider({"type": "slack", "secretRef": {"name": "slack-bot"}})))

    assert not result.delivered
    assert "channel_not_found" in result.message


# --- delivery problems are results -------------------------------------------------------------------


async def test_missing_secret_is_not_delivered_and_names_the_secret(secrets_dir: Path) -> None:
    result = await run_send_alert(alert(provider({"type": "slack", "secretRef": {"name": "slack-url"}})))

    assert not result.delivered
    assert "slack-url" in result.message
    assert "not found" in result.message


async def test_secret_without_address_is_not_delivered(secrets_dir: Path) -> None:
    (secrets_dir / "slack-url.yaml").write_text("token: xoxb-123\n")

    result = await run_send_alert(alert(provider({"type": "slack", "secretRef": {"name": "slack-url"}})))

    assert not result.delivered
    assert "no address" in result.message
    assert "xoxb-123" not in result.message


async def test_receiver_error_is_not_delivered_and_hides_the_token(receiver: HttpReceiver, secrets_dir: Path) -> None:
    hook = receiver.url_for("/services/T000/B000/s3cr3t")
    (secrets_dir / "slack-url.yaml").write_text(f"address: {hook}\ntoken: xoxb-123\n")
    receiver.script(ScriptedResponse(status=500, body=f"internal error for token xoxb-123 at {hook}"))

    result = await run_send_alert(alert(provider({"type": "slack", "secretRef": {"name": "slack-url"}})))

    assert not result.delivered
    assert "bad response 500" in result.message
    assert "xoxb-123" not in result.message
    assert "s3cr3t" not in result.message


async def test_unreachable_address_is_not_delivered(closed_port: int) -> None:
    result = await run_send_alert(alert(provider({"type": "slack", "address": f"http://127.0.0.1:{closed_port}/"})))

    assert not result.delivered
    assert "sending notification failed" in result.message


async def test_unknown_type_is_not_delivered() -> None:
    slack = provider({"type": "slack", "address": "http://127.0.0.1:9/"})
    # Bypass spec validation: the registry, not the spec, decides what can be delivered.
    pager = slack.model_copy(update={"spec": slack.spec.model_copy(update={"type": "pagerduty"})})

    result = await run_send_alert(alert(pager))

    assert result == AlertResult(
        delivered=False, message="alert provider flagger/on-call: no notifier registered for type pagerduty"
    )


# --- registry ----------------------------------------------------------------------------------------


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str | None, str | None]] = []

    async def send(self, alert: Alert, address: str, token: str | None, proxy: str | None) -> None:
        self.sent.append((alert.message, address, token, proxy))


async def test_the_activity_picks_the_notifier_registered_for_the_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = RecordingNotifier()
    monkeypatch.setitem(NOTIFIERS, "gchat", recorder)
    chat = provider({"type": "gchat", "address": "https://chat.example/hook", "proxy": "http://proxy:3128"})

    result = await run_send_alert(alert(chat, message="Canary is waiting for approval."))

    assert result.delivered
    assert recorder.sent == [
        ("Canary is waiting for approval.", "https://chat.example/hook", None, "http://proxy:3128")
    ]


def test_slack_is_registered_and_unknown_types_raise() -> None:
    assert get_notifier("slack") is NOTIFIERS["slack"]
    with pytest.raises(NotifierNotRegistered, match="no notifier registered for type pagerduty"):
        get_notifier("pagerduty")


# --- severity filter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert_severity", "event_severity", "wanted"),
    [
        ("info", "info", True),
        ("info", "warn", True),
        ("info", "error", True),
        ("warn", "info", False),
        ("warn", "warn", True),
        ("warn", "error", True),
        ("error", "info", False),
        ("error", "warn", False),
        ("error", "error", True),
        # Empty means info (Flagger's documented default; its code never fires such an alert).
        ("", "info", True),
        ("", "warn", True),
        ("", "error", True),
        ("critical", "error", False),
        ("info", "debug", False),
    ],
)
def test_alert_severity_filter(alert_severity: str, event_severity: str, wanted: bool) -> None:
    assert alert_wanted(alert_severity, event_severity) is wanted
