"""`make demo`: a sandbox cardkeep in the background and the demo merchant in front, until Ctrl-C.

cardkeep runs as ``cardkeep serve --data-dir DIR --sandbox-account`` (as `make run`), its log in
``DIR/demo-cardkeep.log``; once both listeners answer ``/health`` the demo site starts with the
sandbox key from ``DIR/sandbox-key.txt``. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn
from app import create_app
from sandbox import start_cardkeep, stop_cardkeep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--host", default="127.0.0.1", help="interface of all three listeners")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--pci-port", type=int, default=8001)
    parser.add_argument("--port", type=int, default=8080, help="the demo site's port")
    args = parser.parse_args(argv)

    log_path = args.data_dir / "demo-cardkeep.log"
    print(f"starting cardkeep (log: {log_path}) ...", file=sys.stderr, flush=True)
    try:
        cardkeep = start_cardkeep(
            args.data_dir, log_path, host=args.host, api_port=args.api_port, pci_port=args.pci_port
        )
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        app = create_app(cardkeep.api_url, cardkeep.pci_url, cardkeep.key)
        print(
            "\n".join(
                [
                    "",
                    "cardkeep sandbox",
                    f"  API listener: {cardkeep.api_url}",
                    f"  PCI listener: {cardkeep.pci_url}",
                    f"  sandbox key:  {args.data_dir / 'sandbox-key.txt'}",
                    "",
                    f"demo merchant: http://{args.host}:{args.port}/   (Ctrl-C stops both)",
                    "",
                ]
            ),
            file=sys.stderr,
            flush=True,
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        stop_cardkeep(cardkeep.proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
