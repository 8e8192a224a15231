"""Coordinator actor: the load manager of the consumer pool.

It assigns the partitions of `ecg.samples` to consumer actors explicitly (consumers do not join
a Kafka consumer group), spreads them by load (lag, then count), and reassigns when a consumer
dies, is added or removed. A partition moves only after its old owner has let it go (or is
dead), so two consumers never process it at once.

The coordinator is a named, detached actor that Ray restarts if it dies; consumers are named
and detached too, so a restarted coordinator finds the running pool and its assignment instead
of starting over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray

from actors._assignment import balance
from actors._autoscaling import PoolAutoscaler, ScalingDecision
from actors._consumer import ConsumerActor
from actors.naming import namespace
from ecgstream.io.kafka import make_admin
from ecgstream.io.kafka_transactions import fence
from ecgstream.lanes import lane as lane_named
from ecgstream.settings import Settings

log = logging.getLogger("ecgstream.coordinator")

COORDINATOR_NAME = lane_named("production").coordinator_name
CHECK_INTERVAL_S = 2.0
PING_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0
FENCE_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 60.0  # a consumer leaving the pool has this long to commit what it fetched
MAX_CONSUMER_GENERATIONS = 512  # consumer names are never reused; a restart scans this many


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class Coordinator:
    def __init__(
        self,
        settings_json: str,
        pool_size: int,
        model_dir: str | None = None,
        lane: str = "production",
    ) -> None:
        self._settings_json = settings_json
        self._settings = Settings.from_json(settings_json)
        self._lane = lane_named(lane, self._settings.topics)
        self._pool_size = pool_size
        self._model_dir = model_dir
        self._consumers: dict[str, Any] = {}
        self._assignment: dict[str, list[int]] = {}
        self._partitions: list[int] = []
        self._events: list[str] = []
        self._task: asyncio.Task | None = None
        self._started = time.time()
        self._next_index = 0
        self._paused = False
        # the pool and the assignment change under this lock: scale, reconfigure, rebalance
        # and the watch's recovery never interleave (two of them would start two consumers)
        self._changing = asyncio.Lock()
        self._lost: set[str] = set()  # consumers whose partitions wait for them to be fenced
        self._starting = asyncio.Lock()  # concurrent first calls must not adopt a half-started one
        self._refill_after = 0.0  # monotonic time of the next try to refill a degraded pool
        self._autoscaler: PoolAutoscaler | None = None  # once the partitions are known
        self._last_scaling: dict[str, Any] | None = None

    async def start(self) -> dict[str, Any]:
        await self._ensure_started()
        return await self.status()

    async def _ensure_started(self) -> None:
        """First call after creation *or after a restart by Ray*: adopt the running consumers
        and their current partitions, fill the pool, and watch it. Calls that arrive while the
        first is still starting consumers wait for it (else they would adopt a consumer by name
        before its start() returned and hand it partitions)."""
        if self._task is not None:
            return
        async with self._starting:
            if self._task is not None:
                return
            self._partitions = await self._discover_partitions()
            if self._settings.scaling.autoscale:
                self._autoscaler = PoolAutoscaler(self._settings.scaling, len(self._partitions))
            self._adopt_running_consumers()
            for name, actor in list(self._consumers.items()):
                try:
                    stats = await asyncio.wait_for(actor.stats.remote(), PING_TIMEOUT_S)
                except Exception:
                    stats = {"started": False}
                if not stats.get("started", True):
                    # left half-started by a coordinator that died, or not answering: it is
                    # replaced, and fenced before its partitions move
                    self._consumers.pop(name)
                    ray.kill(actor, no_restart=True)
                    self._lost.add(name)
                    self._event(f"replaced {name}: not started or not answering")
                    continue
                self._assignment[name] = list(stats["partitions"])
                self._paused = self._paused or bool(stats.get("paused"))  # a pause survives
            if self._consumers:
                self._event(f"adopted {len(self._consumers)} running consumers: {self._assignment}")
            await self._ensure_pool()
            if not self._lost or await self._fence_lost():
                await self._rebalance("start")  # else the watch round does, once fenced
            self._task = asyncio.create_task(self._watch())

    async def scale(self, pool_size: int) -> dict[str, Any]:
        await self._ensure_started()
        async with self._changing:
            await self._scale(pool_size)
        return await self.status()

    async def reconfigure(self, settings_json: str) -> dict[str, Any]:
        """Replace every consumer by one started with these settings (e.g. Kafka transactions
        off for a benchmark's comparison); each old one drains and commits first."""
        await self._ensure_started()
        async with self._changing:
            size = self._pool_size
            await self._scale(0)
            self._settings_json, self._settings = settings_json, Settings.from_json(settings_json)
            await self._scale(size)
        return await self.status()

    async def _scale(self, pool_size: int) -> None:
        self._pool_size = pool_size
        if self._autoscaler is not None:
            self._autoscaler.changed(time.monotonic())
        for name in sorted(self._consumers)[pool_size:]:
            actor = self._consumers.pop(name)
            self._assignment.pop(name, None)
            try:  # its batches are committed before it goes; a hung one must not hang us
                await asyncio.wait_for(actor.assign.remote([]), DRAIN_TIMEOUT_S)
                await asyncio.wait_for(actor.stop.remote(), DRAIN_TIMEOUT_S)
            except Exception:
                self._lost.add(name)  # not drained: fenced before its partitions move
            ray.kill(actor, no_restart=True)
            self._event(f"removed {name}")
        await self._ensure_pool()
        if not self._lost or await self._fence_lost():
            await self._rebalance("scale")  # else the watch round does, once they are fenced

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for name, actor in list(self._consumers.items()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(actor.stop.remote(), timeout=15)
            ray.kill(actor, no_restart=True)
            self._consumers.pop(name)

    async def status(self) -> dict[str, Any]:
        await self._ensure_started()
        consumers = []
        for name, actor in sorted(self._consumers.items()):
            try:
                consumers.append(await asyncio.wait_for(actor.stats.remote(), PING_TIMEOUT_S))
            except Exception as exc:
                consumers.append({"name": name, "error": type(exc).__name__})
        scaling = self._settings.scaling
        return {
            "partitions": self._partitions,
            "assignment": self._assignment,
            "pool_size": self._pool_size,
            "autoscaling": {
                "enabled": self._autoscaler is not None,
                "min_consumers": scaling.min_consumers,
                "max_consumers": scaling.max_consumers,
                "worst_lag_s": None if self._autoscaler is None else self._autoscaler.worst_lag_s,
                "last_decision": self._last_scaling,
            },
            "consumers": consumers,
            "events": self._events[-20:],
            "uptime_s": round(time.time() - self._started, 1),
        }

    async def pause(self) -> None:
        """Stop fetching (consumers keep their partitions and patient state): a backlog can then
        be built and drained at full speed (benchmarks, maintenance). Failover still works
        while paused, and a replacement consumer starts paused."""
        await self._ensure_started()
        self._paused = True
        for actor in self._consumers.values():
            await actor.pause.remote()
        self._event("paused")

    async def resume(self) -> dict[str, list[int]]:
        await self._ensure_started()
        self._paused = False
        for actor in self._consumers.values():
            await actor.resume.remote()
        async with self._changing:
            await self._rebalance("resumed")
        self._event("resumed")
        return self._assignment

    async def rebalance(self) -> dict[str, list[int]]:
        await self._ensure_started()
        async with self._changing:
            await self._rebalance("requested")
        return self._assignment

    # -- internals ---------------------------------------------------------------------------

    async def _discover_partitions(self) -> list[int]:
        admin = make_admin(self._settings, role="pipeline")
        await admin.start()
        try:
            described = await admin.describe_topics([self._lane.samples_topic])
        finally:
            await admin.close()
        return sorted(p["partition"] for p in described[0]["partitions"])

    def _adopt_running_consumers(self) -> None:
        """After a coordinator restart: find the consumers that are still running (by name)."""
        for index in range(MAX_CONSUMER_GENERATIONS):
            name = f"{self._lane.consumer_prefix}{index}"
            with contextlib.suppress(ValueError):
                self._consumers[name] = ray.get_actor(name, namespace=namespace())
                self._next_index = max(self._next_index, index + 1)

    async def _ensure_pool(self) -> None:
        """Start consumers up to the pool size. One that cannot start in START_TIMEOUT_S (no
        node has room for it, e.g. after a node is lost) is given up: the pool runs degraded
        and the next watch round tries again."""
        while len(self._consumers) < self._pool_size:
            # never reuse a name: a dead actor's name is released asynchronously
            name = f"{self._lane.consumer_prefix}{self._next_index}"
            self._next_index += 1
            # SPREAD: on a multi-node cluster losing one node loses only part of the pool
            actor = ConsumerActor.options(  # type: ignore[attr-defined]
                name=name,
                namespace=namespace(),
                lifetime="detached",
                scheduling_strategy="SPREAD",
                num_cpus=self._lane.actor_cpus,
            ).remote(name, self._settings_json, self._model_dir, self._lane.name)
            try:
                await asyncio.wait_for(actor.start.remote(), START_TIMEOUT_S)
                if self._paused:
                    await actor.pause.remote()
            except BaseException as exc:  # a cancelled start must not leave an untracked actor
                ray.kill(actor, no_restart=True)
                if not isinstance(exc, Exception):
                    raise
                self._event(
                    f"could not start {name} ({type(exc).__name__}); "
                    f"running {len(self._consumers)} of {self._pool_size}"
                )
                self._refill_after = time.monotonic() + START_TIMEOUT_S
                return
            self._consumers[name] = actor
            self._event(f"started {name}")

    async def _consumer_stats(self) -> dict[str, dict[str, Any]]:
        """Each answering consumer's stats (one that does not answer is left out)."""
        out: dict[str, dict[str, Any]] = {}
        for name, actor in list(self._consumers.items()):
            with contextlib.suppress(Exception):
                out[name] = await asyncio.wait_for(actor.stats.remote(), PING_TIMEOUT_S)
        return out

    async def _lags(self) -> dict[int, int]:
        lags: dict[int, int] = {}
        for stats in (await self._consumer_stats()).values():
            lags.update({int(p): int(v) for p, v in stats["lag"].items()})
        return lags

    async def _rebalance(self, why: str) -> None:
        if not self._consumers:
            return  # nobody to give partitions to; the pool is refilled on the next round
        current = {name: list(self._assignment.get(name, [])) for name in self._consumers}
        target = balance(self._partitions, sorted(self._consumers), await self._lags(), current)
        if target == current and all(name in self._assignment for name in target):
            return
        # first release what moves away, then hand it to its new owner
        for name, partitions in target.items():
            keep = [p for p in current.get(name, []) if p in partitions]
            if keep != current.get(name, []):
                await self._consumers[name].assign.remote(keep)
        for name, partitions in target.items():
            await self._consumers[name].assign.remote(partitions)
        self._assignment = target
        if self._autoscaler is not None:
            self._autoscaler.changed(time.monotonic())  # moved partitions rebuild first
        self._event(f"rebalanced ({why}): {target}")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            dead = []
            for name, actor in list(self._consumers.items()):
                try:
                    await asyncio.wait_for(actor.ping.remote(), PING_TIMEOUT_S)
                except Exception:
                    dead.append(name)
            async with self._changing:  # a scale or a reconfiguration is not half done
                await self._recover([name for name in dead if name in self._consumers])
            if self._autoscaler is not None and not dead and not self._paused:
                try:
                    await self._autoscale(self._autoscaler)
                except Exception as exc:  # retried on the next round
                    log.warning("autoscaling failed: %s", type(exc).__name__)

    async def _autoscale(self, autoscaler: PoolAutoscaler) -> None:
        """Grow, shrink or rebalance the pool on its lag in seconds of input (decision 100)."""
        lag_s: dict[str, float | None] = {}
        for name, stats in (await self._consumer_stats()).items():
            values = list(stats.get("lag_s", {}).values())
            lag_s[name] = None if None in values else max(values, default=0.0)
        decision: ScalingDecision | None = autoscaler.decide(
            time.monotonic(), len(self._consumers), lag_s
        )
        if decision is None:
            return
        async with self._changing:
            before = len(self._consumers)
            if decision.action == "scale":
                way = "out" if decision.size > before else "in"
                self._event(
                    f"autoscaler: scale {way} {before} -> {decision.size} ({decision.reason})"
                )
                await self._scale(decision.size)
            else:
                self._event(f"autoscaler: rebalance ({decision.reason})")
                await self._rebalance("lag skew")
        self._last_scaling = {
            "action": decision.action,
            "size": decision.size,
            "reason": decision.reason,
            "at": time.time(),
        }

    async def _recover(self, dead: list[str]) -> None:
        for name in dead:
            actor = self._consumers.pop(name)
            self._assignment.pop(name, None)
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
            self._lost.add(name)
            self._event(f"lost {name}")
        try:
            if self._lost:  # the survivors take the partitions once the lost are fenced
                if not await self._fence_lost():
                    return
                await self._rebalance("consumer lost")
            degraded = len(self._consumers) < self._pool_size
            if degraded and time.monotonic() >= self._refill_after:
                await self._ensure_pool()
                await self._rebalance("pool refilled")
        except Exception as exc:  # retried on the next round
            log.warning("recovery failed: %s", exc)

    async def _fence_lost(self) -> bool:
        """Fence the lost consumers' transactional ids (their open transactions are aborted,
        later commits refused), so that one declared lost while still running cannot publish
        a batch its partitions' new owner publishes too. False while the broker refuses."""
        for name in sorted(self._lost):
            if self._settings.kafka.transactions:
                try:
                    await asyncio.wait_for(fence(self._settings, name), FENCE_TIMEOUT_S)
                except Exception as exc:
                    self._event(f"could not fence {name} yet ({type(exc).__name__})")
                    return False
                self._event(f"fenced {name}")
            self._lost.discard(name)
        return True

    def _event(self, text: str) -> None:
        self._events.append(f"{time.strftime('%H:%M:%S')} {text}")
        log.info(text)
