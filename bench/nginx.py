"""nginx as the peer proxy: a minimal reverse-proxy config of our own, in a temporary directory."""

from __future__ import annotations

from pathlib import Path

from bench.processes import Server, find_binary, start

# Idle upstream connections each nginx worker keeps open to the mock (the `keepalive` directive),
# matched to the default wrk connection count so nginx never opens a connection per request.
UPSTREAM_KEEPALIVE = 64


def render_config(directory: Path, *, port: int, upstream_port: int, workers: int) -> str:
    """A config that proxies everything to the mock, with reused upstream connections and no logs."""
    temp = directory / "nginx-temp"
    return f"""\
daemon off;
worker_processes {workers};
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream mock {{
        server 127.0.0.1:{upstream_port};
        keepalive {UPSTREAM_KEEPALIVE};
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def start_nginx(directory: Path, *, port: int, upstream_port: int, workers: int) -> Server:
    binary = find_binary("nginx")
    assert binary is not None, "ensure_packages runs first"
    (directory / "nginx-temp").mkdir(exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(render_config(directory, port=port, upstream_port=upstream_port, workers=workers))
    # -e: the start-up error log too, so nothing is written under /var/log.
    argv = [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "nginx-error.log")]
    return start("nginx", argv, directory / "nginx.log")
