"""Pure pieces of the HAProxy router: file layout, the generated haproxy.cfg, runtime maps, Prometheus targets.

Nothing here touches a process or a socket, so all of it is testable without HAProxy.

What changes per release step lives in two runtime maps that the router rewrites through the runtime API (and
on disk, so a reload or restart loads the same values); the config itself only changes with the spec:
- `routes.map`: `ab` (A/B pinning on), `mirror` (mirroring on), `sticky` (session affinity on), the cookie values
  and Max-Ages, and the requested weights (`route_primary`, `route_canary`).
- `cookies.map`: cookie value -> `canary` | `primary` | `expire` (a previous canary cookie to delete).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canaryflow.spec import Canary, CanaryAnalysis, LocalAppSpec, SessionAffinity, parse_duration

BACKEND = "backend"  # proxy name of the weighted backend (`haproxy_server_*{proxy="backend"}`)
MIRROR_BACKEND = "mirror"
PRIMARY = "primary"
CANARY = "canary"
LOOPBACK = "127.0.0.1"
# Longest unix socket path the kernel accepts (sun_path is 108 bytes including the trailing NUL).
MAX_SOCKET_PATH = 107

# Characters allowed in paths written unquoted into the config (map paths are converter arguments).
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+~@-]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#&*+.^_|~-]+$")
_PARAM_NAME = re.compile(r"^[A-Za-z0-9._~-]+$")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#&*+.^_|~-]+$")
_COOKIE_DOMAIN = re.compile(r"^[A-Za-z0-9.-]+$")
_COOKIE_PATH = re.compile(r"^/[A-Za-z0-9._~!&()*+=:@/-]*$")
_HTTP_PATH = re.compile(r"^/[^\s'\"#\\]*$")
_MAP_VALUE = re.compile(r"^[A-Za-z0-9._~-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_STRING_MATCH_FLAGS = {"exact": "str", "prefix": "beg", "suffix": "end", "regex": "reg"}
_MATCH_KEYS = ("headers", "withoutHeaders", "uri", "method", "queryParams", "ignoreUriCase", "name")

MIRROR_LUA = """\
-- canaryflow traffic mirror: copies each request to the canary, fire and forget.
-- The client only ever sees the response of the normal route. Methods other than these are not copied.
local senders = {GET = "get", HEAD = "head", PUT = "put", POST = "post", DELETE = "delete"}

core.register_action("canaryflow_mirror", {"http-req"}, function(txn, destination)
  local sender = senders[txn.sf:method()]
  if sender == nil then return end
  local headers = {}
  for name, values in pairs(txn.http:req_get_headers()) do
    if name ~= "host" and name ~= "content-length" and name ~= "connection" and name ~= "transfer-encoding" then
      local copy = {}
      for _, value in pairs(values) do copy[#copy + 1] = value end
      headers[name] = copy
    end
  end
  local body = txn.sf:req_body()
  if body ~= nil and #body > 0 then headers["content-length"] = {tostring(#body)} end
  local url = "http://" .. (txn.sf:req_hdr("host") or "127.0.0.1") .. txn.sf:pathq()
  core.register_task(function()
    local client = core.httpclient()
    client[sender](client, {url = url, headers = headers, body = body, timeout = 2000, dst = destination})
  end)
end, 1)
"""


class ConfigError(ValueError):
    """The canary asks for something the HAProxy router cannot express; the message names the field."""


@dataclass(frozen=True)
class HAProxyPaths:
    """Where one canary's HAProxy keeps its files: `<state_dir>/local/<namespace>/<name>/haproxy/`."""

    directory: Path
    targets_file: Path

    @property
    def config(self) -> Path:
        return self.directory / "haproxy.cfg"

    @property
    def candidate_config(self) -> Path:
        return self.directory / "haproxy.cfg.new"

    @property
    def socket(self) -> Path:
        return self.directory / "haproxy.sock"

    @property
    def pid(self) -> Path:
        return self.directory / "haproxy.pid"

    @property
    def state(self) -> Path:
        return self.directory / "haproxy.state"

    @property
    def log(self) -> Path:
        return self.directory / "haproxy.log"

    @property
    def routes_map(self) -> Path:
        return self.directory / "routes.map"

    @property
    def cookies_map(self) -> Path:
        return self.directory / "cookies.map"

    @property
    def mirror_lua(self) -> Path:
        return self.directory / "mirror.lua"

    @property
    def mirror_socket(self) -> Path:
        return self.directory / "mirror.sock"

    @property
    def lock(self) -> Path:
        return self.directory / ".lock"


def haproxy_paths(state_dir: Path, namespace: str, name: str) -> HAProxyPaths:
    state_dir = state_dir.absolute()
    return HAProxyPaths(
        directory=state_dir / "local" / namespace / name / "haproxy",
        targets_file=state_dir / "prometheus" / "targets" / f"{namespace}-{name}.json",
    )


def check_paths(paths: HAProxyPaths) -> None:
    """Reject state directories HAProxy cannot use (unsafe characters, unix socket paths that are too long)."""
    directory = str(paths.directory.absolute())
    if not _SAFE_PATH.match(directory):
        raise ConfigError(
            f"the HAProxy state directory {directory!r} contains characters HAProxy's config cannot hold "
            "unquoted; use a CANARYFLOW_STATE_DIR made of letters, digits and . _ / + ~ @ -"
        )
    for socket_path in (paths.socket, paths.mirror_socket):
        length = len(str(socket_path.absolute()))
        if length > MAX_SOCKET_PATH:
            raise ConfigError(
                f"the unix socket path {str(socket_path)!r} is {length} bytes long, more than the "
                f"{MAX_SOCKET_PATH} the kernel accepts; use a shorter CANARYFLOW_STATE_DIR"
            )


def local_spec(canary: Canary) -> LocalAppSpec:
    if canary.spec.local is None:
        raise ConfigError(
            "spec.local is missing: the haproxy router needs the ports of a LocalApp target "
            "(spec.local.primaryPort, canaryPort, routerMetricsPort)"
        )
    return canary.spec.local


def quote(value: str) -> str:
    """One config word holding `value` verbatim: single quotes, with `'` written as `'\\''` like a shell."""
    return "'" + value.replace("'", "'\\''") + "'"


# ----------------------------------------------------------------------------------------------------
# analysis.match (Istio HTTPMatchRequest) -> ACLs


def _string_match(where: str, fetch: str, match: Any, ignore_case: bool = False) -> str:
    """The ACL criterion (`<fetch> -m <method> <pattern>`) of one Istio StringMatch."""
    if not isinstance(match, Mapping):
        raise ConfigError(f"{where} must be a map with one of exact, prefix, suffix, regex")
    if not match:
        return f"{fetch} -m found"  # Istio: a header named without a value only needs to be present
    if len(match) != 1 or next(iter(match)) not in _STRING_MATCH_FLAGS:
        raise ConfigError(
            f"{where} must have exactly one of exact, prefix, suffix, regex (found: {', '.join(map(str, match))})"
        )
    kind, value = next(iter(match.items()))
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{kind} must be a string")
    if _CONTROL.search(value):
        raise ConfigError(f"{where}.{kind} contains a control character")
    # Envoy matches a regex against the whole value (RE2 full match); HAProxy's PCRE searches, so anchor it.
    pattern = f"^(?:{value})$" if kind == "regex" else value
    case = " -i" if ignore_case else ""
    return f"{fetch} -m {_STRING_MATCH_FLAGS[kind]}{case} -- {quote(pattern)}"  # `--`: patterns may start with -


def _named_matches(where: str, value: Any, name_pattern: re.Pattern[str]) -> list[tuple[str, Any]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a map of name -> string match")
    for name in value:
        if not isinstance(name, str) or not name_pattern.match(name):
            raise ConfigError(f"{where}: {name!r} is not a name the haproxy router can match")
    return list(value.items())


def match_acls(match: Sequence[Mapping[str, Any]]) -> tuple[list[str], str]:
    """ACL lines and the condition (`ab_active ab_0_0 ab_0_1 || ab_active ab_1_0`) for `analysis.match`.

    Conditions within one HTTPMatchRequest are ANDed, the requests are ORed, as in Istio.
    """
    acls: list[str] = []
    alternatives: list[str] = []
    for index, request in enumerate(match):
        where = f"analysis.match[{index}]"
        if not isinstance(request, Mapping):
            raise ConfigError(f"{where} must be a map (an Istio HTTPMatchRequest)")
        unsupported = [key for key in request if key not in _MATCH_KEYS]
        if unsupported:
            raise ConfigError(
                f"{where}.{unsupported[0]} is not supported by the haproxy router "
                f"(supported: {', '.join(key for key in _MATCH_KEYS if key != 'name')})"
            )
        criteria: list[tuple[str, bool]] = []  # (criterion, negated)
        for header, header_match in _named_matches(f"{where}.headers", request.get("headers", {}), _HEADER_NAME):
            criteria.append((_string_match(f"{where}.headers.{header}", f"req.fhdr({header})", header_match), False))
        without = _named_matches(f"{where}.withoutHeaders", request.get("withoutHeaders", {}), _HEADER_NAME)
        for header, header_match in without:
            where_header = f"{where}.withoutHeaders.{header}"
            criteria.append((_string_match(where_header, f"req.fhdr({header})", header_match), True))
        if "uri" in request:
            ignore_case = bool(request.get("ignoreUriCase", False))
            criteria.append((_string_match(f"{where}.uri", "path", request["uri"], ignore_case), False))
        if "method" in request:
            criteria.append((_string_match(f"{where}.method", "method", request["method"]), False))
        params = _named_matches(f"{where}.queryParams", request.get("queryParams", {}), _PARAM_NAME)
        for param, param_match in params:
            fetch = f"url_param({param}),url_dec"
            criteria.append((_string_match(f"{where}.queryParams.{param}", fetch, param_match), False))
        terms = ["ab_active"]
        for position, (criterion, negated) in enumerate(criteria):
            acl = f"ab_{index}_{position}"
            acls.append(f"acl {acl} {criterion}")
            terms.append(f"!{acl}" if negated else acl)
        alternatives.append(" ".join(terms))
    return acls, " || ".join(alternatives)


# ----------------------------------------------------------------------------------------------------
# Session affinity cookies


def _cookie_attributes(affinity: SessionAffinity) -> str:
    """Flagger's BuildCookie attributes after Max-Age, in its order; values are checked to be config-safe."""
    attributes = ""
    if affinity.domain:
        if not _COOKIE_DOMAIN.match(affinity.domain):
            raise ConfigError(f"analysis.sessionAffinity.domain {affinity.domain!r} is not a plain domain name")
        attributes += f"; Domain={affinity.domain}"
    if affinity.http_only:
        attributes += "; HttpOnly"
    if affinity.partitioned:
        attributes += "; Partitioned"
    if affinity.path:
        if not _COOKIE_PATH.match(affinity.path):
            raise ConfigError(
                f"analysis.sessionAffinity.path {affinity.path!r} must be an absolute path of letters, digits "
                "and . _ ~ ! & ( ) * + = : @ / -"
            )
        attributes += f"; Path={affinity.path}"
    if affinity.same_site:
        attributes += f"; SameSite={affinity.same_site}"
    if affinity.secure:
        attributes += "; Secure"
    return attributes


def _cookie_name(where: str, name: str) -> str:
    if not _COOKIE_NAME.match(name):
        raise ConfigError(f"analysis.sessionAffinity.{where} {name!r} is not a cookie name the router supports")
    return name


def _expiry_attributes(affinity: SessionAffinity) -> str:
    # Browsers only delete a cookie when Domain and Path match the ones it was set with.
    attributes = f"; Domain={affinity.domain}" if affinity.domain else ""
    return attributes + (f"; Path={affinity.path}" if affinity.path else "")


def _affinity_lines(affinity: SessionAffinity, routes_map: Path, cookies_map: Path) -> list[str]:
    name = _cookie_name("cookieName", affinity.cookie_name)
    primary = _cookie_name("primaryCookieName", affinity.primary_cookie_name) if affinity.primary_cookie_name else ""
    attributes = _cookie_attributes(affinity)
    routes = f"map({routes_map})"
    sticky_on = f"{{ str(sticky),map({routes_map},0) -m str 1 }}"
    requests = [
        "# session affinity: the canary cookie pins a client to the canary while canary weight > 0",
        f"http-request set-var(txn.canary_cookie) req.cook({name})",
        f"http-request set-var(txn.affinity) var(txn.canary_cookie),map({cookies_map})",
    ]
    servers = [f"use-server {CANARY} if {{ var(txn.affinity) -m str canary }}"]
    responses = [
        f'http-response add-header Set-Cookie "{name}=%[str(canary_cookie),{routes}]; '
        f'Max-Age=%[str(canary_max_age),{routes}]{attributes}" '
        f"if {{ srv_name {CANARY} }} !{{ var(txn.affinity) -m str canary }} {sticky_on}",
        f'http-response add-header Set-Cookie "{name}=%[var(txn.canary_cookie)]; Max-Age=-1'
        f'{_expiry_attributes(affinity)}" if {{ var(txn.affinity) -m str expire }}',
    ]
    if primary:
        requests.append(f"http-request set-var(txn.primary_affinity) req.cook({primary}),map({cookies_map})")
        servers.append(f"use-server {PRIMARY} if {{ var(txn.primary_affinity) -m str primary }}")
        responses.append(
            f'http-response add-header Set-Cookie "{primary}=%[str(primary_cookie),{routes}]; '
            f'Max-Age=%[str(primary_max_age),{routes}]{attributes}" '
            f"if {{ srv_name {PRIMARY} }} !{{ var(txn.primary_affinity) -m str primary }} {sticky_on}"
        )
    return requests + servers + responses


# ----------------------------------------------------------------------------------------------------
# haproxy.cfg


def _mirror_enabled(analysis: CanaryAnalysis | None) -> bool:
    return analysis is not None and analysis.mirror


def uses_ab_testing(canary: Canary) -> bool:
    analysis = canary.spec.analysis
    return analysis is not None and bool(analysis.match)


def mirror_configured(canary: Canary) -> bool:
    return _mirror_enabled(canary.spec.analysis)


def maps_in_use(canary: Canary, paths: HAProxyPaths) -> list[Path]:
    """The runtime maps the config loads (the runtime API only knows those)."""
    analysis = canary.spec.analysis
    if analysis is None:
        return []
    used = [paths.routes_map] if analysis.mirror or analysis.match or analysis.session_affinity else []
    if analysis.session_affinity is not None and not analysis.match:
        used.append(paths.cookies_map)
    return used


def render_config(canary: Canary, paths: HAProxyPaths) -> str:
    """The whole haproxy.cfg of one canary. Raises ConfigError for a spec the router cannot express."""
    local = local_spec(canary)
    check_paths(paths)
    if not _HTTP_PATH.match(local.readiness_path):
        raise ConfigError(f"spec.local.readinessPath {local.readiness_path!r} cannot be used as a health check URI")
    analysis = canary.spec.analysis
    mirror = _mirror_enabled(analysis)
    key = f"{canary.metadata.namespace}/{canary.metadata.name}"
    server_options = "check inter 1s downinter 500ms"

    lines = [
        f"# Generated by canaryflow for {key}; rewritten by the router's reconcile, do not edit.",
        "global",
        "    log stderr format raw local0 notice",
        f"    stats socket {paths.socket} mode 600 level admin",
        f"    pidfile {paths.pid}",
        f"    server-state-file {paths.state}",
        "    nbthread 1",
        "    hard-stop-after 10s",
    ]
    if mirror:
        lua_digest = hashlib.sha256(MIRROR_LUA.encode()).hexdigest()[:12]
        lines.append(f"    lua-load {paths.mirror_lua}  # sha256 {lua_digest}")
    lines += [
        "",
        "defaults",
        "    mode http",
        "    load-server-state-from-file global",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout check 2s",
        "",
        "frontend apex",
        f"    bind {LOOPBACK}:{canary.spec.service.port}",
    ]
    if mirror:
        assert analysis is not None
        sampled = f" {{ rand(100) lt {analysis.mirror_weight} }}" if analysis.mirror_weight else ""
        lines += [
            "    option http-buffer-request  # the mirror copies the request body",
            f"    http-request lua.canaryflow_mirror unix@{paths.mirror_socket} "
            f"if {{ str(mirror),map({paths.routes_map},0) -m str 1 }}{sampled}",
        ]
    lines += [
        f"    default_backend {BACKEND}",
        "",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option redispatch 1",
        "    retries 3",
        "    retry-on conn-failure empty-response  # a restarting app must not fail requests",
        "    option httpchk",
        f"    http-check send meth GET uri {local.readiness_path}",
    ]
    if analysis is not None and analysis.match:
        acls, condition = match_acls(analysis.match)
        lines.append("    # A/B testing: requests matching analysis.match go to the canary while its weight > 0")
        lines.append(f"    acl ab_active str(ab),map({paths.routes_map},0) -m str 1")
        lines += [f"    {acl}" for acl in acls]
        lines.append(f"    use-server {CANARY} if {condition}")
    elif analysis is not None and analysis.session_affinity is not None:
        affinity_lines = _affinity_lines(analysis.session_affinity, paths.routes_map, paths.cookies_map)
        lines += [f"    {line}" for line in affinity_lines]
    lines += [
        f"    server {PRIMARY} {LOOPBACK}:{local.primary_port} weight 100 {server_options}",
        f"    server {CANARY} {LOOPBACK}:{local.canary_port} weight 0 {server_options}",
    ]
    if mirror:
        lines += [
            "",
            "# mirrored copies pass through HAProxy so the canary's server metrics count them",
            f"frontend {MIRROR_BACKEND}",
            f"    bind unix@{paths.mirror_socket} mode 600",
            f"    default_backend {MIRROR_BACKEND}",
            "",
            f"backend {MIRROR_BACKEND}",
            f"    server {CANARY} {LOOPBACK}:{local.canary_port} track {BACKEND}/{CANARY}",
        ]
    lines += [
        "",
        "frontend stats",
        f"    bind {LOOPBACK}:{local.router_metrics_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 5s",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Runtime maps


@dataclass(frozen=True)
class RuntimeRoutes:
    """What one `set_routes` call writes: server weights and the two maps."""

    primary_weight: int
    canary_weight: int
    routes: dict[str, str]
    cookies: dict[str, str]


def default_routes_map() -> dict[str, str]:
    return {
        "ab": "0",
        "mirror": "0",
        "sticky": "0",
        "canary_cookie": "-",
        "canary_max_age": "0",
        "primary_cookie": "-",
        "primary_max_age": "0",
        "route_primary": "100",
        "route_canary": "0",
    }


def _map_value(where: str, value: str) -> str:
    if not _MAP_VALUE.match(value):
        raise ConfigError(f"{where} {value!r} must be made of letters, digits and . _ ~ -")
    return value


def runtime_routes(
    canary: Canary,
    primary_weight: int,
    canary_weight: int,
    mirrored: bool,
    cookie_value: str = "",
    cookie_max_age: int = 0,
    previous_cookie: str = "",
    primary_cookie_value: str = "",
) -> RuntimeRoutes:
    """Server weights and map contents for the requested routes.

    A/B: the servers stay at primary 100 / canary 0 so requests that do not match stay on the primary; the
    requested weights only switch the pinning of matching requests (on while the canary weight is > 0).
    """
    analysis = canary.spec.analysis
    if mirrored and not _mirror_enabled(analysis):
        raise ConfigError("mirroring was requested but analysis.mirror is not set, so no mirror is configured")
    routes = default_routes_map()
    routes["route_primary"], routes["route_canary"] = str(primary_weight), str(canary_weight)
    routes["mirror"] = "1" if mirrored else "0"
    cookies: dict[str, str] = {}
    ab_testing = uses_ab_testing(canary)
    if ab_testing:
        routes["ab"] = "1" if canary_weight > 0 else "0"
    elif analysis is not None and analysis.session_affinity is not None:
        if canary_weight > 0 and cookie_value:
            routes["sticky"] = "1"
            routes["canary_cookie"] = cookies_key = _map_value("the session affinity cookie", cookie_value)
            routes["canary_max_age"] = str(cookie_max_age)
            cookies[cookies_key] = CANARY
            if analysis.session_affinity.primary_cookie_name and primary_cookie_value:
                primary_key = _map_value("the primary session affinity cookie", primary_cookie_value)
                routes["primary_cookie"] = primary_key
                routes["primary_max_age"] = str(int(parse_duration(analysis.interval).total_seconds()))
                cookies[primary_key] = PRIMARY
        elif canary_weight == 0 and previous_cookie:
            cookies[_map_value("the previous session affinity cookie", previous_cookie)] = "expire"
    if ab_testing:
        return RuntimeRoutes(100, 0, routes, cookies)
    return RuntimeRoutes(primary_weight, canary_weight, routes, cookies)


def render_map(entries: Mapping[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in entries.items())


def parse_map(text: str) -> dict[str, str]:
    """Entries of a map file, or of `show map` output (`0x55d0... key value`)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("0x"):
            parts = parts[1:]
        if len(parts) == 2 and not parts[0].startswith("#"):
            entries[parts[0]] = parts[1]
    return entries


def weight_commands(old: Mapping[str, int], new: Mapping[str, int]) -> list[str]:
    """Runtime API commands moving the servers from `old` to `new` weights, without roundrobin starvation.

    HAProxy's roundrobin can starve a server that stays above 0 while the other one comes back from 0 (measured:
    no request at all for hundreds of requests, depending on the order of the two `set weight`). Setting the
    returning server first and taking the staying one through maint/ready gives the exact split at once.
    """
    returning = [server for server in new if old.get(server, 0) == 0 and new[server] > 0]
    staying = [server for server in new if old.get(server, 0) > 0 and new[server] > 0]
    ordered = returning + [server for server in new if server not in returning]
    commands = [f"set weight {BACKEND}/{server} {new[server]}" for server in ordered]
    if returning:
        for server in staying:
            commands += [f"set server {BACKEND}/{server} state maint", f"set server {BACKEND}/{server} state ready"]
    return commands


def rewrite_server_state(state: str, ports: Mapping[str, int]) -> str:
    """`show servers state` output with each server's address and port set to the config's.

    HAProxy applies the state file's address over the config's, so without this a changed port in the spec
    would silently keep the old one across the reload.
    """
    lines = []
    for line in state.splitlines():
        fields = line.split(" ")
        if len(fields) > 18 and not line.startswith("#") and fields[3] in ports:
            fields[4] = LOOPBACK
            fields[18] = str(ports[fields[3]])
            line = " ".join(fields)
        lines.append(line)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Prometheus file_sd targets


def prometheus_targets(canary: Canary) -> list[dict[str, Any]]:
    """file_sd target groups: HAProxy's exporter and, if the app exports metrics, the two app processes."""
    local = local_spec(canary)
    key = f"{canary.metadata.namespace}/{canary.metadata.name}"
    groups: list[dict[str, Any]] = [
        {
            "targets": [f"{LOOPBACK}:{local.router_metrics_port}"],
            "labels": {"canary": key, "component": "router"},
        }
    ]
    if local.metrics_path:
        for role, port in ((PRIMARY, local.primary_port), (CANARY, local.canary_port)):
            groups.append(
                {
                    "targets": [f"{LOOPBACK}:{port}"],
                    "labels": {
                        "__metrics_path__": local.metrics_path,
                        "canary": key,
                        "role": role,
                        "component": "app",
                    },
                }
            )
    return groups


def render_targets(canary: Canary) -> str:
    return json.dumps(prometheus_targets(canary), indent=2) + "\n"
