"""`ecgstream plan`: which deployment fits a situation, sized from ecgstream's own measurements.

The three deployments answer different needs: a REST service other applications call on demand;
a real-time stream watching many patients where an arrhythmia is an immediate risk; an edge
runner that keeps working with no network. The situation's answers pick one; the sizing comes
from the benchmarks' JSON outputs (`Evidence`), never from constants in this file: the only
numbers here are policy (run at half the measured capacity, at least two API replicas).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ecgstream.errors import ConfigurationError
from ecgstream.planning.figures import Evidence, Figure, at_least, ceil, constant

Access = Literal["public", "internal"]
Latency = Literal["realtime", "interactive", "batch"]
Connectivity = Literal["always", "intermittent", "none"]
Hardware = Literal["cpu", "gpu", "microcontroller"]
Deployment = Literal["streaming", "rest", "edge"]

HEADROOM = 2.0  # run at half the measured capacity: the latency figures are measured there
CATCH_UP = 2.0  # the autoscaling ceiling: drain a backlog (after an outage) at twice real time


@dataclass(frozen=True)
class Situation:
    patients: int
    access: Access = "internal"
    latency: Latency = "realtime"
    connectivity: Connectivity = "always"
    hardware: Hardware = "cpu"
    requests_per_patient_hour: float = 6.0  # REST: segments each patient's record is sent
    cores_per_node: int = 8


@dataclass(frozen=True)
class Sized:
    label: str
    figure: Figure
    unit: str
    digits: int = 0


@dataclass
class Plan:
    deployment: Deployment
    reasons: list[str]
    sizing: list[Sized] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alternatives: dict[str, str] = field(default_factory=dict)


def choose(situation: Situation) -> tuple[Deployment, list[str], dict[str, str]]:
    """The deployment and why, with why not the others."""
    s = situation
    if s.connectivity == "none" or s.hardware == "microcontroller":
        why = (
            "no network: only a model on the device can classify, and alarms must sound there"
            if s.connectivity == "none"
            else "the signal is produced on a small device: classify beside it, send only results"
        )
        return (
            "edge",
            [why],
            {
                "streaming": "needs the device to reach Kafka continuously",
                "rest": "needs a network round trip per request",
            },
        )
    if s.connectivity == "intermittent":
        return (
            "edge",
            [
                "the network comes and goes: the device raises alarms itself and forwards results "
                "exactly once when it is back (outbox)",
            ],
            {
                "streaming": "a dropped link would delay alarms until it returns",
                "rest": "no answer at all while the link is down",
            },
        )
    if s.latency == "realtime":
        return (
            "streaming",
            [
                "bedside monitoring: every beat classified and alarms raised within seconds, "
                "continuously, for every patient at once",
                "all patients share one pool of consumers and replicas, load balanced by Kafka "
                "partitions",
            ],
            {
                "rest": "clients would have to poll; no alarm is raised unless someone asks",
                "edge": "fine per device, but fleet-wide dashboards and one model release path are "
                "easier centrally when the network is reliable",
            },
        )
    reasons = [
        "on-demand classification: other applications send a segment or a record and get "
        "beats, classes and alarms back",
    ]
    if s.access == "public":
        reasons.append(
            "public access: HTTPS at the ingress, API keys stored hashed, a request budget per key"
        )
    else:
        reasons.append("internal access: a service inside the network, API keys per client")
    return (
        "rest",
        reasons,
        {
            "streaming": "a continuous stream per patient is more than on-demand use needs",
            "edge": "the callers are applications on a network, not devices without one",
        },
    )


def recommend(situation: Situation, evidence: Evidence) -> Plan:
    deployment, reasons, alternatives = choose(situation)
    plan = Plan(deployment, reasons, alternatives=alternatives)
    {"streaming": _size_streaming, "rest": _size_rest, "edge": _size_edge}[deployment](
        situation, evidence, plan
    )
    return plan


def pipeline_cpus(e: Evidence) -> Figure:
    """The cores the pipeline benchmark ran on (older outputs lack it: the API benchmark's
    machine, the same one)."""
    try:
        return e.figure("bench_pipeline", "cpus")
    except ConfigurationError:
        return e.figure("bench_api", "cpus")


def _size_streaming(s: Situation, e: Evidence, plan: Plan) -> None:
    patients = constant(s.patients)
    per_core = e.figure("bench_pipeline", "realtime_patients") / pipeline_cpus(e)
    cores = at_least(2, ceil(patients * HEADROOM / per_core))
    beats = e.figure("bench_bandwidth", "beats_per_patient_s")
    replicas = at_least(
        1, ceil(patients * beats * HEADROOM / e.figure("bench_pipeline", "bare_model_beats_per_s"))
    )
    consumers = cores  # one consumer per core, as measured
    most_consumers = consumers * CATCH_UP
    most_replicas = replicas * CATCH_UP
    memory = (
        consumers * e.actor_memory("ecgstream-consumer")
        + replicas * e.actor_memory("SERVE_REPLICA::ecgstream-inference")
        + e.actor_memory("ecgstream-coordinator")
        + e.actor_memory("ecgstream-monitor")
    )
    plan.sizing = [
        Sized("real-time patients per core (measured)", per_core, "patients"),
        Sized("cores (at half of the measured capacity)", cores, "cores"),
        Sized("nodes", ceil(cores / s.cores_per_node), f"node(s) of {s.cores_per_node} cores"),
        Sized("consumer actors (the autoscaling floor)", consumers, "actor(s)"),
        Sized("consumer actors at most (catch-up at twice real time)", most_consumers, "actor(s)"),
        Sized("Kafka partitions of ecg.samples", at_least(8, most_consumers), "partitions"),
        Sized("Serve classifier replicas (the autoscaling floor)", replicas, "replica(s)"),
        Sized("Serve classifier replicas at most", most_replicas, "replica(s)"),
        Sized(
            "nodes at most (autoscaling)",
            ceil(cores * CATCH_UP / s.cores_per_node),
            f"node(s) of {s.cores_per_node} cores",
        ),
        Sized(
            "Kafka in (signal)",
            patients * e.figure("bench_bandwidth", "kafka_in_bytes_per_patient_s") / 1000,
            "kB/s",
            1,
        ),
        Sized(
            "Kafka out (beats, alarms)",
            patients * e.figure("bench_bandwidth", "kafka_out_bytes_per_patient_s") / 1000,
            "kB/s",
            1,
        ),
        Sized("latency p50 at half load", e.figure("bench_pipeline", "latency_p50_ms"), "ms", 1),
        Sized("latency p99 at half load", e.figure("bench_pipeline", "latency_p99_ms"), "ms", 1),
        Sized("memory of the actors", memory / 1024, "GB", 1),
    ]
    plan.notes.append(
        "autoscaling: set ECGSTREAM_SCALING__AUTOSCALE=true, __MIN_CONSUMERS and "
        "__MAX_CONSUMERS to the consumer floor and ceiling above, __CLASSIFIER_MIN_REPLICAS and "
        "__CLASSIFIER_MAX_REPLICAS to the replicas'; on KubeRay the same numbers go into the "
        "ConfigMap, the classifier's autoscaling_config in the RayService, and the nodes into "
        "the CPU worker group's minReplicas and maxReplicas"
    )
    plan.notes.append(
        "devices publish to ecg.samples as the `device` principal (TLS + SCRAM); the central "
        "station (`ecgstream station up`) reads samples, beats and alerts as `subscriber`"
    )
    if s.hardware == "gpu":
        plan.notes.append(
            "GPU: the classifier replicas can take a GPU each (Kubernetes GPU worker group); "
            "these figures were measured on CPU only"
        )
    if s.access == "public":
        plan.notes.append(
            "public access: expose Kafka only through its external TLS + SCRAM listener; "
            "add the REST API for on-demand callers"
        )


def _size_rest(s: Situation, e: Evidence, plan: Plan) -> None:
    rps = constant(s.patients) * s.requests_per_patient_hour / 3600.0
    per_replica = e.figure("bench_api", "api_rps") / e.figure("bench_api", "api_replicas")
    replicas = at_least(2, ceil(rps * HEADROOM / per_replica))
    cores_per_replica = e.figure("bench_api", "cpus") / e.figure("bench_api", "api_replicas")
    plan.sizing = [
        Sized("requests per second (average)", rps, "req/s", 2),
        Sized("requests per second per replica (measured)", per_replica, "req/s", 1),
        Sized("API replicas (at half capacity, two or more)", replicas, "replicas"),
        Sized("cores", replicas * cores_per_replica, "cores"),
        Sized(
            "inbound",
            rps * e.figure("bench_bandwidth", "rest_request_bytes_per_segment") / 1000,
            "kB/s",
            1,
        ),
        Sized(
            "outbound",
            rps * e.figure("bench_bandwidth", "rest_response_bytes_per_segment") / 1000,
            "kB/s",
            1,
        ),
        Sized("latency p50 per segment", e.figure("bench_api", "api_p50_ms"), "ms", 1),
        Sized("latency p99 per segment", e.figure("bench_api", "api_p99_ms"), "ms", 1),
        Sized(
            "memory per replica",
            e.actor_memory("SERVE_REPLICA::ecgstream-inference"),
            "MB",
        ),
    ]
    plan.notes.append(
        "sized for this many segment requests per patient per hour "
        f"(--requests-per-patient-hour): {s.requests_per_patient_hour:g}"
    )


def _size_edge(s: Situation, e: Evidence, plan: Plan) -> None:
    beats = e.figure("bench_bandwidth", "beats_per_patient_s")
    process_ms = e.figure("bench_edge", "fp32_process_ms_per_beat")
    plan.sizing = [
        Sized("devices (one runner each)", constant(s.patients), "runners"),
        Sized("CPU of one core per device", beats * process_ms / 1000 * 100, "%", 2),
        Sized("classification per beat", e.figure("bench_edge", "fp32_ms_per_beat"), "ms", 3),
        Sized("memory per runner (peak RSS)", e.figure("bench_edge", "peak_rss_mb"), "MB", 1),
        Sized("model size (int8)", e.figure("bench_edge", "int8_model_bytes") / 1000, "kB", 1),
        Sized(
            "uplink per device when connected",
            e.figure("bench_bandwidth", "edge_uplink_bytes_per_patient_s"),
            "B/s",
            1,
        ),
        Sized(
            "uplink saved against streaming the signal",
            e.figure("bench_bandwidth", "kafka_in_bytes_per_patient_s")
            / e.figure("bench_bandwidth", "edge_uplink_bytes_per_patient_s"),
            "x",
            1,
        ),
    ]
    if s.hardware == "microcontroller":
        plan.notes.append(
            "a microcontroller cannot host the runner (Python, numpy, onnxruntime, "
            f"{e.figure('bench_edge', 'peak_rss_mb').value:g} MB): run it on a gateway-class "
            "board beside the sensor, which streams samples to it over a local link"
        )
    plan.notes.append(
        "results wait in the device's SQLite outbox while offline and reach Kafka exactly once "
        "(as the `edge` principal) when the link returns"
    )


def render(plan: Plan) -> str:
    lines = [f"Recommended: {plan.deployment}", ""]
    lines += [f"  why: {reason}" for reason in plan.reasons]
    lines += ["", "  sizing (each from the measured figures after it):"]
    for item in plan.sizing:
        lines.append(f"    {item.label}: {format_value(item)} {item.unit}")
        lines.append(f"        = {item.figure.formula}")
    if plan.notes:
        lines += ["", *[f"  note: {note}" for note in plan.notes]]
    lines += ["", "  not chosen:"]
    lines += [f"    {name}: {why}" for name, why in plan.alternatives.items()]
    return "\n".join(lines)


def format_value(item: Sized) -> str:
    return f"{item.figure.value:,.{item.digits}f}"


def to_json(plan: Plan) -> dict[str, object]:
    return {
        "deployment": plan.deployment,
        "reasons": plan.reasons,
        "sizing": [
            {
                "label": i.label,
                "value": round(i.figure.value, i.digits),
                "unit": i.unit,
                "formula": i.figure.formula,
            }
            for i in plan.sizing
        ],
        "notes": plan.notes,
        "not_chosen": plan.alternatives,
    }
