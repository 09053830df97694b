"""`python -m devkit`: the development run and the mock upstream, kept out of the product's CLI."""

from __future__ import annotations

import argparse
import sys

from gateway.core import config


def cmd_dev(args: argparse.Namespace) -> int:
    from devkit import dev

    dev.main(config.load(port=args.port, host=args.host))
    return 0


def cmd_mock_upstream(args: argparse.Namespace) -> int:
    from devkit import mock_target

    mock_target.run(args.host, args.port, args.public_url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run on the embedded default: own PostgreSQL, Redis, mock target")
    dev.add_argument("--host", default=None)
    dev.add_argument("--port", type=int, default=None)
    dev.set_defaults(func=cmd_dev)

    mock = sub.add_parser("mock-upstream", help="run the mock upstream server (HTML target + AI APIs)")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9000)
    mock.add_argument("--public-url", default=None,
                      help="the base URL the mock embeds in its links (default http://HOST:PORT)")
    mock.set_defaults(func=cmd_mock_upstream)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
