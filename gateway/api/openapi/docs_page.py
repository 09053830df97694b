"""The /docs page: the OpenAPI description rendered on the server as one HTML page — operations by
tag with their parameters, bodies and answers, then the shared schemas. Every text is escaped."""

from __future__ import annotations

import html
from typing import Any

import orjson

HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/static/docs.css"></head><body><main>
<h1>{title} <small>{version}</small></h1><p>{description}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI {openapi}). Server: <code>{server}</code></p>
<nav><ul>{toc}</ul></nav>"""
SECURITY_NAMES = {"bearer": "Bearer JWT", "apiKey": "API key", "accessToken": "X-Access-Token"}


def _e(value: object) -> str:
    return html.escape(str(value))


def _json(value: Any) -> str:
    return _e(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _anchor(text: str) -> str:
    return "".join(character if character.isalnum() else "-" for character in text.lower())


def _parameters(spec: dict) -> str:
    rows = "".join(f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                   f"<td>{'yes' if p.get('required') else ''}</td><td><code>{_json(p.get('schema', {}))}</code></td>"
                   f"<td>{_e(p.get('description', ''))}</td></tr>" for p in spec.get("parameters", []))
    if not rows:
        return ""
    return ("<table><thead><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th></th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def _operation(path: str, method: str, spec: dict) -> str:
    security = ", ".join(SECURITY_NAMES.get(name, name) for item in spec.get("security", []) for name in item)
    parts = [f'<section class="operation" id="{_e(spec["operationId"])}"><h3><span class="method {method}">'
             f"{_e(method.upper())}</span> <code>{_e(path)}</code></h3><p>{_e(spec['summary'])}</p>"]
    if spec.get("description"):
        parts.append(f"<p>{_e(spec['description'])}</p>")
    parts.append(f"<p class=\"muted\">Authentication: {_e(security or 'none')}</p>")
    parts.append(_parameters(spec))
    for media, content in spec.get("requestBody", {}).get("content", {}).items():
        parts.append(f"<h4>Body ({_e(media)})</h4><pre>{_json(content.get('schema', {}))}</pre>")
    for status, answer in spec["responses"].items():
        schemas = "".join(f"<pre>{_e(media)}: {_json(content.get('schema', {}))}</pre>"
                          for media, content in answer.get("content", {}).items())
        parts.append(f"<details><summary><b>{_e(status)}</b> {_e(answer['description'])}</summary>{schemas}</details>")
    return "".join(parts) + "</section>"


def render(document: dict, tags: list[str]) -> str:
    info = document["info"]
    by_tag: dict[str, list[str]] = {tag: [] for tag in tags}
    for path, operations in document["paths"].items():
        for method, spec in operations.items():
            by_tag.setdefault(spec["tags"][0], []).append(_operation(path, method, spec))
    toc = "".join(f'<li><a href="#{_anchor(tag)}">{_e(tag)}</a></li>' for tag, items in by_tag.items() if items)
    page = [HEAD.format(title=_e(info["title"]), version=_e(info["version"]), description=_e(info["description"]),
                        openapi=_e(document["openapi"]), server=_e(document["servers"][0]["url"]), toc=toc)]
    for tag, items in by_tag.items():
        if items:
            page.append(f'<h2 id="{_anchor(tag)}">{_e(tag)}</h2>' + "".join(items))
    page.append("<h2 id=\"schemas\">Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        page.append(f'<section class="schema" id="schema-{_e(name)}"><h3>{_e(name)}</h3><pre>{_json(schema)}</pre>'
                    "</section>")
    return "".join(page) + "</main></body></html>"
