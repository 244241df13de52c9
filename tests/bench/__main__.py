"""``make bench``: the card-on-file flow under load against a real server on 127.0.0.1.

Each flow is the core path: PCI create (card authorized, PAN sealed) → create payment intent →
charge. With ``--kind page`` it is the hosted card page's path instead: create the setup intent on
the API listener → load the page → the card through its endpoint → payment intent → charge. Flows run with bounded concurrency, for 1 and 2 worker processes, on a SQLite file and
on a throwaway PostgreSQL database of the local server (127.0.0.1:5432); the run prints a Markdown table (flows/s and per-request latency percentiles) to paste into
docs/benchmarks.md. Load goes to loopback only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.e2e.harness import SI_FIELDS, VERSION, Server, card, run_server
from tests.postgres import throwaway_database
from tests.tls import certificate


async def _flow(
    client_api: httpx.AsyncClient,
    client_pci: httpx.AsyncClient,
    lat: dict[str, list[float]],
    i: int,
) -> None:
    t0 = time.perf_counter()
    r = await client_pci.post("/setup-intents", json={**SI_FIELDS, "cardDetails": card()})
    t1 = time.perf_counter()
    if r.status_code != 200 or r.json()["status"] != "Authorized":
        raise RuntimeError(f"PCI create failed: {r.status_code} {r.text}")
    body = {
        "amount": {"value": 1000 + (i % 50) * 100, "currencyCode": "GBP"},
        "reference": f"bench {i}",
        "setupIntentId": r.json()["id"],
    }
    r = await client_api.post("/payment-intents", json=body)
    t2 = time.perf_counter()
    assert r.status_code == 200, r.text
    r = await client_api.post(f"/payment-intents/{r.json()['id']}/charge")
    t3 = time.perf_counter()
    if r.status_code != 200 or r.json()["status"] != "Successful":
        raise RuntimeError(f"charge failed: {r.status_code} {r.text}")
    lat["pci_create"].append(t1 - t0)
    lat["pi_create"].append(t2 - t1)
    lat["charge"].append(t3 - t2)


async def _page_flow(
    client_api: httpx.AsyncClient,
    client_pci: httpx.AsyncClient,
    lat: dict[str, list[float]],
    i: int,
) -> None:
    t0 = time.perf_counter()
    r = await client_api.post("/setup-intents", json=SI_FIELDS)
    t1 = time.perf_counter()
    assert r.status_code == 200, r.text
    si_id, secret = r.json()["id"], r.json()["clientSessionSecret"]
    page = await client_pci.get(f"/setup/{si_id}", params={"clientSessionSecret": secret})
    t2 = time.perf_counter()
    assert page.status_code == 200, page.text
    r = await client_pci.post(
        f"/setup-intents/public/{si_id}/card",
        json={"cardDetails": card(), "mitConsentGiven": True},
        headers={"Authorization": f"Basic {secret}"},
    )
    t3 = time.perf_counter()
    if r.status_code != 200 or r.json()["status"] != "Authorized":
        raise RuntimeError(f"page card failed: {r.status_code} {r.text}")
    body = {"amount": {"value": 1000, "currencyCode": "GBP"}, "reference": f"b {i}"}
    r = await client_api.post("/payment-intents", json={**body, "setupIntentId": si_id})
    assert r.status_code == 200, r.text
    r = await client_api.post(f"/payment-intents/{r.json()['id']}/charge")
    t4 = time.perf_counter()
    if r.status_code != 200 or r.json()["status"] != "Successful":
        raise RuntimeError(f"charge failed: {r.status_code} {r.text}")
    lat["api_create"].append(t1 - t0)
    lat["page"].append(t2 - t1)
    lat["page_card"].append(t3 - t2)
    lat["pi_and_charge"].append(t4 - t3)


KINDS = {
    "pci": (_flow, ("pci_create", "pi_create", "charge")),
    "page": (_page_flow, ("api_create", "page", "page_card", "pi_and_charge")),
}


async def _run(
    api_url: str, pci_url: str, key: str, flows: int, concurrency: int, kind: str = "pci"
) -> tuple[float, dict[str, list[float]]]:
    headers = {"Authorization": f"Basic {key}", "version": VERSION}
    limits = httpx.Limits(max_connections=concurrency)
    flow, names = KINDS[kind]
    lat: dict[str, list[float]] = {name: [] for name in names}
    sem = asyncio.Semaphore(concurrency)
    async with (
        httpx.AsyncClient(base_url=api_url, headers=headers, limits=limits, timeout=60) as api,
        httpx.AsyncClient(base_url=pci_url, headers=headers, limits=limits, timeout=60) as pci,
    ):

        async def one(i: int) -> None:
            async with sem:
                await flow(api, pci, lat, i)

        await asyncio.gather(*(one(i) for i in range(min(20, flows))))  # warm-up
        for v in lat.values():
            v.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(flows)))
        elapsed = time.perf_counter() - started
    return flows / elapsed, lat


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


# Production recovery timing: the test harness's half-second recovery delay would make the
# acquirer call's timeout a quarter of a second, which a loaded machine exceeds.
ENV = {"CARDKEEP_RECOVERY_AFTER": "30"}


@contextmanager
def _server(engine: str, workers: int, internal_tls: bool) -> Iterator[Server]:
    """A server to load; with ``internal_tls`` its internal hop runs over TLS (a self-signed
    certificate, which the API workers trust exactly)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(ENV)
        if internal_tls:
            pem, _ = certificate(Path(tmp) / "tls")
            env |= {
                "CARDKEEP_INTERNAL_TLS_CERT": str(pem.cert),
                "CARDKEEP_INTERNAL_TLS_KEY": str(pem.key),
            }
        data = Path(tmp) / "data"
        if engine == "sqlite":
            with run_server(data, workers=workers, env=env) as server:
                yield server
            return
        with (
            throwaway_database("bench") as url,
            run_server(data, workers=workers, env=env, database_url=url) as server,
        ):
            yield server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--flows", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kind", choices=sorted(KINDS), default="pci")
    parser.add_argument(
        "--engines", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument(
        "--internal-tls", action="store_true", help="the internal hop over TLS (a self-signed cert)"
    )
    args = parser.parse_args()
    rows = []
    for engine in args.engines:
        for workers in args.workers:
            with _server(engine, workers, args.internal_tls) as server:
                key = server.create_account("bench")
                rate, lat = asyncio.run(
                    _run(
                        server.api_url, server.pci_url, key, args.flows, args.concurrency, args.kind
                    )
                )
            for name, values in lat.items():
                p50, p95, p99 = (_pct(values, q) for q in (50, 95, 99))
                rows.append((engine, workers, name, rate, p50, p95, p99))
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d} · {platform.machine()} · {platform.python_version()} · {args.kind} flows: {args.flows}, concurrency {args.concurrency}{', internal hop over TLS' if args.internal_tls else ''}\n"
    )
    print("| engine | workers | request | flows/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for engine, workers, name, rate, p50, p95, p99 in rows:
        print(f"| {engine} | {workers} | {name} | {rate:.0f} | {p50:.1f} | {p95:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
