"""The admin web UI: aiohttp-jinja2 views over the admin JSON API (built in a later issue)."""
