"""Many slow clients held open at once: each connects, makes one request, reads its answer and then
stays connected without sending anything (an idle keep-alive connection, as a slow or parked
client holds it), until this process is told to stop.

    python -m bench.slow_clients --port P --path /health --count 10000

Prints `ready <held> <failed>` once every connection has had its answer, then `held <n>` when stdin
closes or SIGTERM arrives. Run by the soak in `python -m bench.all`; never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys

OPEN_AT_ONCE = 256
ANSWER_TIMEOUT_S = 30.0
DESCRIPTORS_SPARE = 256


async def _one(host: str, port: int, request: bytes, held: list) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), ANSWER_TIMEOUT_S)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT_S)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await asyncio.wait_for(reader.readexactly(length), ANSWER_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
        return False
    held.append((reader, writer))
    return True


async def hold(host: str, port: int, path: str, count: int, headers: list[str]) -> None:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    request = "\r\n".join(lines).encode()
    held: list = []
    failed = 0
    for start in range(0, count, OPEN_AT_ONCE):
        batch = [_one(host, port, request, held) for _ in range(min(OPEN_AT_ONCE, count - start))]
        failed += sum(1 for ok in await asyncio.gather(*batch) if not ok)
    print(f"ready {len(held)} {failed}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1024) else None)
    await stop.wait()
    still_open = sum(1 for reader, _writer in held if not reader.at_eof())
    print(f"held {still_open}", flush=True)
    for _reader, writer in held:
        writer.transport.abort()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/health")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.count + DESCRIPTORS_SPARE
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    asyncio.run(hold(args.host, args.port, args.path, args.count, args.header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
