"""Work WeChat (企业微信) group-robot webhook transport (no Airflow).

Documented format (https://developer.work.weixin.qq.com/document/path/91770): ``POST
https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`` with a JSON body
``{"msgtype": "markdown", "markdown": {"content": "..."}}`` or ``{"msgtype": "text", "text":
{"content": "...", "mentioned_mobile_list": [...]}}``; the answer is ``{"errcode": 0, "errmsg":
"ok"}`` on success.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_HOST = "qyapi.weixin.qq.com"
WEBHOOK_PATH = "/cgi-bin/webhook/send"


class WeComError(RuntimeError):
    """The webhook refused the message or could not be reached (the key is never in the text)."""


def webhook_url(host: str | None, key: str | None, *, schema: str | None = None, port: int | None = None) -> str:
    """The webhook URL from connection fields: ``host`` is a full URL (``https://.../send?key=K``)
    or a host name; ``key`` (password or extra) is added as ``?key=`` when the URL has none."""
    host = (host or DEFAULT_HOST).strip()
    if "://" in host:
        url = host
    else:
        scheme = schema if schema in ("http", "https") else "https"
        hostport = f"{host}:{port}" if port else host
        path = "" if "/" in host else WEBHOOK_PATH
        url = f"{scheme}://{hostport}{path}"
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    if "key" not in query:
        if not key:
            raise WeComError(
                "the Work WeChat webhook has no key: put the robot key in the connection's "
                "password (or extra 'key') or in the URL as ?key="
            )
        query["key"] = key
    path = parts.path or WEBHOOK_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), ""))


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "key=***", ""))


def send(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """POST ``payload``; ``WeComError`` unless the robot answers ``errcode`` 0."""
    data = json.dumps(payload, ensure_ascii=False).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise WeComError(f"Work WeChat webhook {_redact(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeComError(f"Work WeChat webhook {_redact(url)} unreachable: {reason}") from None
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        raise WeComError(f"Work WeChat webhook {_redact(url)} answered non-JSON: {body[:200]!r}") from None
    if answer.get("errcode", 0) != 0:
        raise WeComError(
            f"Work WeChat webhook refused the message: errcode {answer.get('errcode')}, {answer.get('errmsg')}"
        )
    return answer
