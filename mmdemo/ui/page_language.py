"""Which language the page opens in, decided in the browser before Gradio starts.

Gradio's frontend picks its locale once, from `navigator.language`, as its module script starts; texts it has drawn
(tab titles among them) do not change with a later locale switch. So the choice is made first: `PageLanguage`, an
ASGI middleware, puts `SCRIPT` at the top of the page's <head>, before Gradio's scripts. The script

- picks the language: `?lang=` in the address, else the switch's last choice (kept in `localStorage`), else the
  browser's language (Chinese for any `zh-*`, English otherwise);
- shows it to Gradio as `navigator.language`, and to the server as the `mmdemo-lang` cookie (handlers render their
  texts in it: `mmdemo.ui.i18n.locale_of`);
- gives the switch `mmdemoSetLanguage(value)`: remember the choice and reload the page in that language.
"""

from __future__ import annotations

import json
import string
from typing import Any

from mmdemo.i18n import DEFAULT_LOCALE, LOCALES

COOKIE = "mmdemo-lang"

SCRIPT = string.Template("""<script>
(() => {
  const locales = $locales;
  const valid = (value) => (locales.includes(value) ? value : null);
  let remembered = null;
  try { remembered = localStorage.getItem("$cookie"); } catch (e) {}
  const browser = (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "$default";
  const chosen = valid(new URLSearchParams(location.search).get("lang")) || valid(remembered) || browser;
  for (const name of ["language", "languages"]) {
    Object.defineProperty(Navigator.prototype, name, {
      get: () => (name === "language" ? chosen : [chosen]), configurable: true,
    });
  }
  document.cookie = "$cookie=" + chosen + "; path=/; SameSite=Lax";
  document.documentElement.lang = chosen;
  window.mmdemoLanguage = chosen;
  window.mmdemoSetLanguage = (value) => {
    if (!valid(value) || value === chosen) return;
    try { localStorage.setItem("$cookie", value); } catch (e) {}
    const address = new URL(location.href);
    address.searchParams.delete("lang");
    location.replace(address.toString());
  };
})();
</script>""").substitute(locales=json.dumps(list(LOCALES)), cookie=COOKIE, default=DEFAULT_LOCALE).encode()

_HEAD = b"<head>"
_PAGE_MARK = b"window.gradio_config"  # Gradio's page, not an uploaded or generated HTML file


class PageLanguage:
    """ASGI middleware: `SCRIPT` first in the <head> of Gradio's page (GET requests answered with text/html that
    carry Gradio's config); every other response passes through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or "/gradio_api/" in scope["path"]:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = None
                    await send(message)
                    return
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if _PAGE_MARK in body and _HEAD in body:
                body = body.replace(_HEAD, _HEAD + SCRIPT, 1)
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def app_kwargs() -> dict[str, Any]:
    """What `launch(app_kwargs=...)` needs for the page's language."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(PageLanguage)]}
