"""Lanes: the same consumer pool machinery serving different purposes, isolated from each other.

- `production`: the live pipeline. Reads `ecg.samples`, raises alarms, feeds the monitor, writes
  `ecg.beats` and the `beats` table.
- `shadow`: a candidate mirrored on the live traffic. Reads `ecg.samples` under its own consumer
  group, so it sees every chunk production sees without taking any from it; writes only
  `ecg.beats.shadow` and `beats_shadow`; never alarms, never the monitor.
- `staging`: infravalidation of a candidate. Reads its own topic `ecg.samples.staging` (replays
  of holdout patients), writes only `ecg.beats.staging` and `beats_staging`.

Each lane has its own Serve application, coordinator and consumer names, so stopping a shadow
or staging lane cannot touch production. Plain data, below both the actors and the Serve
deployments that read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecgstream.settings import TopicSettings

# the production lane's Serve application (serve_app.inference deploys it under this name)
APP_NAME = "ecgstream-inference"


@dataclass(frozen=True)
class Lane:
    name: str
    serve_app: str
    samples_topic: str
    consumer_group: str
    beats_topic: str
    beats_table: str
    raises_alarms: bool
    feeds_monitor: bool
    mirrors_live: bool = False  # a new consumer group starts at the live end of the topic
    # Ray's logical CPUs per consumer actor and per Serve replica. A candidate's lane asks for
    # less so it fits beside production on a 2-core node (its load is a replay or a mirror).
    actor_cpus: float = 0.5

    @property
    def coordinator_name(self) -> str:
        return "ecgstream-coordinator" + ("" if self.name == "production" else f"-{self.name}")

    @property
    def consumer_prefix(self) -> str:
        middle = "" if self.name == "production" else f"{self.name}-"
        return f"ecgstream-consumer-{middle}"


LANE_NAMES = ("production", "shadow", "staging")


def lane(name: str, topics: TopicSettings | None = None) -> Lane:
    topics = topics or TopicSettings()
    if name == "production":
        return Lane(
            name="production",
            serve_app=APP_NAME,
            samples_topic=topics.samples,
            consumer_group="ecgstream-pipeline",
            beats_topic=topics.beats,
            beats_table="beats",
            raises_alarms=True,
            feeds_monitor=True,
        )
    if name == "shadow":
        return Lane(
            name="shadow",
            serve_app="ecgstream-shadow",
            samples_topic=topics.samples,
            consumer_group="ecgstream-shadow",
            beats_topic=topics.beats_shadow,
            beats_table="beats_shadow",
            raises_alarms=False,
            feeds_monitor=False,
            mirrors_live=True,
            actor_cpus=0.25,
        )
    if name == "staging":
        return Lane(
            name="staging",
            serve_app="ecgstream-staging",
            samples_topic=topics.samples_staging,
            consumer_group="ecgstream-staging",
            beats_topic=topics.beats_staging,
            beats_table="beats_staging",
            raises_alarms=False,
            feeds_monitor=False,
            actor_cpus=0.25,
        )
    raise ValueError(f"unknown lane {name!r}; one of {', '.join(LANE_NAMES)}")
