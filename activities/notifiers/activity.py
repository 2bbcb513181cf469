"""The alert activity: resolve the provider's address and token, pick the notifier by type, send.

Alert failures never fail a release, so every delivery problem is reported as `delivered=False`.
"""

from __future__ import annotations

from temporalio import activity

from activities.contracts import ACT_NOTIFY_ALERT, Alert, AlertResult
from activities.notifiers.base import NotifierNotRegistered, get_notifier
from activities.secrets import SecretError, read_secret

SECRET_ADDRESS_KEY = "address"
SECRET_TOKEN_KEY = "token"


@activity.defn(name=ACT_NOTIFY_ALERT)
async def send_alert(alert: Alert) -> AlertResult:
    provider = alert.provider
    provider_label = f"alert provider {provider.metadata.namespace}/{provider.metadata.name}"
    spec = provider.spec
    address = spec.address or ""
    token: str | None = None
    if spec.secret_ref is not None:
        try:
            secret = read_secret(spec.secret_ref.name, provider.metadata.namespace)
        except SecretError as error:
            return AlertResult(delivered=False, message=f"{provider_label}: {error}")
        # The secret's address takes precedence over spec.address.
        address = secret.get(SECRET_ADDRESS_KEY) or address
        token = secret.get(SECRET_TOKEN_KEY) or None
    if not address:
        where = f"in secret {spec.secret_ref.name!r} (key {SECRET_ADDRESS_KEY!r})" if spec.secret_ref else "in spec"
        return AlertResult(delivered=False, message=f"{provider_label} has no address {where}; alert not sent")

    try:
        notifier = get_notifier(spec.type)
    except NotifierNotRegistered as error:
        return AlertResult(delivered=False, message=f"{provider_label}: {error}")
    try:
        await notifier.send(alert, address, token, spec.proxy)
    except Exception as error:
        reason = _without_secrets(str(error) or type(error).__name__, address, token)
        activity.logger.warning("%s: alert not delivered: %s", provider_label, reason)
        return AlertResult(delivered=False, message=f"{provider_label}: {reason}")
    return AlertResult(delivered=True, message=f"sent to {spec.type} via {provider_label}")


def _without_secrets(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text
