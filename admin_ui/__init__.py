"""The admin web UI at /admin/ (decision 0018): server-rendered pages (aiohttp-jinja2, autoescaped)
over the same functions as the admin JSON API; sessions in PostgreSQL, a CSRF token on every form,
charts drawn as SVG on the server, no script and nothing from elsewhere."""
