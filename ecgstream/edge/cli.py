"""`ecgstream-edge`: the offline runner of a small device (numpy, scipy and onnxruntime only;
`aiokafka` to forward). argparse rather than typer, to keep the device's dependencies minimal.

    ecgstream-edge run --bundle DIR --device ID --outbox FILE (--wfdb RECORD | --input FILE|-)
    ecgstream-edge forward --outbox FILE --kafka HOST:PORT
    ecgstream-edge status --outbox FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

from ecgstream.edge._sources import open_source
from ecgstream.edge.bundle import load_edge_model
from ecgstream.edge.outbox import Outbox
from ecgstream.edge.runner import NEXT_SAMPLE, EdgeRunner
from ecgstream.errors import ConfigurationError

log = logging.getLogger("ecgstream.edge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgstream-edge", description="Beat classification and alarms with no network."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="classify a stream; store (and forward) the results")
    run.add_argument("--bundle", type=Path, required=True, help="from `ecgstream edge export`")
    run.add_argument("--int8", action="store_true", help="the int8 model (smaller, faster)")
    run.add_argument("--device", required=True, help="this device's id (the beats' key)")
    run.add_argument("--patient", default="", help="pseudonymous patient reference")
    run.add_argument("--outbox", type=Path, required=True, help="the SQLite queue")
    run.add_argument("--wfdb", type=Path, help="a WFDB record (path without extension)")
    run.add_argument("--speed", type=float, default=1.0, help="x real time for --wfdb; 0: max")
    run.add_argument("--seconds", type=float, help="play only the first seconds of --wfdb")
    run.add_argument("--input", help="text samples, one line per sample; - for stdin")
    run.add_argument("--fs", type=float, help="sampling rate of --input (Hz)")
    run.add_argument("--leads", help="lead names of --input, comma-separated")
    run.add_argument("--chunk-s", type=float, default=1.0, help="seconds per processing step")
    _kafka_arguments(run)
    run.add_argument(
        "--drain-s", type=float, default=30.0, help="at the end, wait this long for forwarding"
    )
    forward = commands.add_parser("forward", help="send what the outbox holds, then exit")
    forward.add_argument("--outbox", type=Path, required=True)
    forward.add_argument("--device", required=True)
    forward.add_argument("--timeout-s", type=float, default=120.0)
    _kafka_arguments(forward, required=True)
    status = commands.add_parser("status", help="what the outbox holds (JSON)")
    status.add_argument("--outbox", type=Path, required=True)
    return parser


def _kafka_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--kafka", required=required, help="bootstrap servers to forward to")
    parser.add_argument("--beats-topic", default="ecg.beats")
    parser.add_argument("--alerts-topic", default="ecg.alerts")
    parser.add_argument("--kafka-user", help="SCRAM-SHA-512 principal (SASL_SSL)")
    parser.add_argument(
        "--kafka-password-file",
        help="a 0600 file with its password (or ECGSTREAM_EDGE_KAFKA_PASSWORD)",
    )
    parser.add_argument("--kafka-ca", help="PEM CA that signs the brokers (enables TLS)")
    parser.add_argument("--kafka-cert", help="client certificate for mutual TLS")
    parser.add_argument("--kafka-key", help="its private key (a 0600 file)")
    parser.add_argument(
        "--keep-sent-hours",
        type=float,
        default=24.0,
        help="prune acknowledged rows older than this (unsent rows are never pruned)",
    )
    parser.add_argument(
        "--max-sent-rows", type=int, default=200_000, help="and keep at most this many of them"
    )


def _retention(args: argparse.Namespace) -> Any:
    from ecgstream.io.edge_forward import Retention

    if args.keep_sent_hours < 0 or args.max_sent_rows < 0:
        raise ValueError("--keep-sent-hours and --max-sent-rows must not be negative")
    return Retention(args.keep_sent_hours * 3600.0, args.max_sent_rows)


def _kafka_target(args: argparse.Namespace) -> Any:
    import os

    from ecgstream.io.edge_forward import KafkaTarget, read_password_file

    password = os.environ.get("ECGSTREAM_EDGE_KAFKA_PASSWORD")
    if args.kafka_password_file:
        password = read_password_file(args.kafka_password_file)
    return KafkaTarget(
        args.kafka,
        args.beats_topic,
        args.alerts_topic,
        username=args.kafka_user,
        password=password,
        ca_file=args.kafka_ca,
        cert_file=args.kafka_cert,
        key_file=args.kafka_key,
    )


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_edge_model(args.bundle, "int8" if args.int8 else "fp32")
    source = open_source(
        args.wfdb, args.input, args.fs, args.leads, args.speed, args.chunk_s, args.seconds
    )
    outbox = Outbox(args.outbox)
    # a live stream continues its sample count after a restart; a file starts again at 0
    start = 0 if source.replayable else int(outbox.get(f"{NEXT_SAMPLE}:{args.device}") or 0)
    runner = EdgeRunner(
        model, outbox, args.device, args.patient, source.fs, source.lead_names, start
    )
    stop = asyncio.Event()
    forwarding = None
    forwarder = None
    if args.kafka:
        from ecgstream.io.edge_forward import KafkaForwarder

        target = _kafka_target(args)
        forwarder = KafkaForwarder(outbox, target, args.device, _retention(args))
        forwarding = asyncio.create_task(forwarder.run(stop))
    started = time.perf_counter()
    async for chunk in source.chunks():
        runner.push(chunk)
    runner.finish()
    elapsed = time.perf_counter() - started
    if forwarding is not None:
        stop.set()
        try:
            await asyncio.wait_for(forwarding, args.drain_s)
        except TimeoutError:
            log.warning("forwarding did not finish in %.0f s; the rest stays queued", args.drain_s)
    stats = runner.stats
    return {
        "device": args.device,
        "model_version": model.version,
        "variant": model.variant,
        "lead": runner.lead,
        "samples": stats.samples,
        "beats": stats.beats,
        "alarms": stats.alarms,
        "labels": stats.labels,
        "new_in_outbox": stats.stored,
        "rejected_lines": source.rejected_lines,
        "seconds": round(elapsed, 3),
        "classify_ms_per_beat": round(stats.classify_s * 1000 / stats.beats, 4)
        if stats.beats
        else None,
        "forwarded": forwarder.sent if forwarder is not None else 0,
        "pruned": forwarder.pruned if forwarder is not None else 0,
        "outbox": outbox.counts(),
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries a parent's
    ru_maxrss into a child it forks, so a runner started by a big process would report that."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            summary = asyncio.run(_run(args))
        elif args.command == "forward":
            from ecgstream.io.edge_forward import forward_until_empty

            outbox = Outbox(args.outbox)
            target = _kafka_target(args)
            sent = forward_until_empty(
                outbox, target, args.device, args.timeout_s, _retention(args)
            )
            summary = {"forwarded": sent, "outbox": outbox.counts()}
        else:
            summary = Outbox(args.outbox).counts()
    except (ConfigurationError, ValueError, OSError) as exc:
        print(f"ecgstream-edge: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    if args.command == "forward" and summary["outbox"]["pending"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
