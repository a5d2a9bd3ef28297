"""`python -m aegir.dashboard RUN_OR_SWEEP_DIR ... [--out dashboard.html] [--serve PORT] [--host HOST]`

One self-contained HTML page (plotly inlined: it opens from disk, air-gapped) over run directories, multirun
directories and Optuna sweep directories: runs table, curves with seed bands, arm overlay with paired differences,
GRPO health, gate strip, provenance and config diff, sweeps, learning dynamics, samples -- each panel only where
its data exists. `--serve PORT` serves the page on HOST:PORT (127.0.0.1 unless told) and rebuilds it when a run
directory changes, for watching live runs; the open page reloads itself.
"""

from __future__ import annotations

import argparse
import http.server
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from aegir.dashboard.data import load
from aegir.dashboard.render import build_payload, render_html
from aegir.rundir import HISTORY, METADATA, SUMMARY

INPUT_ERROR = 2
WATCHED = (METADATA, SUMMARY, HISTORY)


def build(paths: Sequence[Path], out: Path, live: bool = False) -> tuple[int, float]:
    """Write the page; returns (bytes, seconds)."""
    started = time.perf_counter()
    text = render_html(build_payload(load(paths)), live=live)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return len(text.encode("utf-8")), time.perf_counter() - started


def fingerprint(paths: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """(file, mtime, size) of every run file the page is built from: a change means a rebuild."""
    seen = []
    for root in paths:
        for name in WATCHED:
            for path in Path(root).rglob(name):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                seen.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(seen))


def serve(paths: Sequence[Path], out: Path, host: str, port: int, poll_s: float = 2.0) -> None:
    """Serve the page and `version` (its build count); a thread rebuilds it when the run files change."""
    state = {"version": 0, "print": fingerprint(paths)}
    build(paths, out, live=True)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            current = fingerprint(paths)
            if current != state["print"]:
                state["print"] = current
                size, seconds = build(paths, out, live=True)
                state["version"] += 1
                print(f"rebuilt {out} ({size / 1e6:.1f} MB, {seconds:.1f} s)", flush=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.rstrip("/").endswith("version"):
                body = str(state["version"]).encode()
                kind = "text/plain"
            else:
                body = out.read_bytes()
                kind = "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    threading.Thread(target=watch, daemon=True).start()
    server = http.server.ThreadingHTTPServer((host, port), Handler)
    print(f"serving http://{host}:{server.server_address[1]}/ (rebuilt when runs change; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegir.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run, multirun or sweep directories")
    parser.add_argument("--out", type=Path, default=Path("dashboard.html"), help="the HTML file to write")
    parser.add_argument("--serve", type=int, metavar="PORT", help="serve on localhost and rebuild on changes")
    parser.add_argument("--host", default="127.0.0.1", help="address --serve binds (default: localhost only)")
    args = parser.parse_args(argv)
    for path in args.paths:
        if not path.exists():
            print(f"aegir.dashboard: {path}: no such directory", file=sys.stderr)
            return INPUT_ERROR
        if not path.is_dir():
            print(f"aegir.dashboard: {path}: not a directory (give a run, multirun or sweep directory)",
                  file=sys.stderr)
            return INPUT_ERROR
    if not args.out.parent.is_dir():
        print(f"aegir.dashboard: --out {args.out}: no such directory {args.out.parent}", file=sys.stderr)
        return INPUT_ERROR
    if args.serve is not None:
        if not 0 <= args.serve <= 65535:
            print(f"aegir.dashboard: --serve {args.serve}: not a port (0-65535)", file=sys.stderr)
            return INPUT_ERROR
        serve(args.paths, args.out, args.host, args.serve)
        return 0
    size, seconds = build(args.paths, args.out)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB, {seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
