"""One actor-group helper for every pool (learner ranks, rollout engines, sandbox actors), in the
spirit of OpenRLHF's ``PPORayActorGroup``: placement group(s), bundles, scheduling, shutdown.

An ``ActorGroup`` either

* creates ``count`` placement groups from one list of ``bundles`` and a ``strategy`` and waits (all
  at once) up to ``ready_timeout_s`` for them; if they are not schedulable it removes them and
  raises ``TimeoutError`` naming the bundles, the strategy and ``ray.cluster_resources()``;
* adopts a given ``placement_group`` (not waited for, never removed: its owner does that); or
* has no placement group at all (actors scheduled by their own options, e.g. ``"SPREAD"``).

``launch`` starts an actor (in bundle ``bundle_index`` of placement group ``placement_group_index``)
and tracks its handle; ``kill`` kills one (e.g. to restart it); ``shutdown`` kills every tracked
actor and removes only the placement groups the group created. ``shutdown`` is idempotent.

Usage::

    group = ActorGroup("learner", [{"CPU": 1}] * 2, "PACK", ready_timeout_s=60)
    ranks = [group.launch(Rank, r, bundle_index=r, options={"num_cpus": 1}) for r in range(2)]
    ...
    group.shutdown()
"""
from __future__ import annotations

from typing import Any, Optional

import ray
from ray.util.placement_group import placement_group as create_placement_group
from ray.util.placement_group import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


class ActorGroup:
    """Placement group(s) plus the actors launched into them; ``what`` names the group in errors."""

    def __init__(self, what: str, bundles: Optional[list[dict]] = None, strategy: str = "PACK", *,
                 count: int = 1, placement_group=None, ready_timeout_s: float = 600):
        if bundles is not None and placement_group is not None:
            raise ValueError(f"{what}: give bundles (to create a placement group) or placement_group "
                             "(to adopt one), not both")
        if count < 1:
            raise ValueError(f"{what}: count must be >= 1, got {count}")
        self.what = what
        self.bundles, self.strategy = bundles, strategy
        self.actors: list = []
        self.owns_placement_groups = bundles is not None
        if placement_group is not None:
            self.placement_groups = [placement_group]
        elif bundles is not None:
            self.placement_groups = [create_placement_group(bundles, strategy=strategy) for _ in range(count)]
            self._wait_ready(ready_timeout_s)
        else:
            self.placement_groups = []

    def _wait_ready(self, timeout_s: float) -> None:
        pgs = self.placement_groups
        ready, _ = ray.wait([pg.ready() for pg in pgs], num_returns=len(pgs), timeout=timeout_s)
        if len(ready) == len(pgs):
            return
        self.shutdown()  # remove the ones that did get scheduled too
        if len(pgs) == 1:
            where = f"{self.what} placement group {self.bundles} ({self.strategy})"
        else:
            where = (f"{len(pgs) - len(ready)} of {len(pgs)} {self.what} placement groups "
                     f"({self.bundles}, {self.strategy})")
        raise TimeoutError(f"{where} not schedulable within {timeout_s}s; cluster has {ray.cluster_resources()}")

    @property
    def placement_group(self):
        """The group's placement group (None without one); several: use ``placement_groups``."""
        if len(self.placement_groups) > 1:
            raise ValueError(f"{self.what} has {len(self.placement_groups)} placement groups; "
                             "use placement_groups[i]")
        return self.placement_groups[0] if self.placement_groups else None

    def scheduling(self, bundle_index: int, *, placement_group_index: int = 0,
                   capture_child_tasks: bool = False) -> PlacementGroupSchedulingStrategy:
        """The strategy putting an actor in bundle ``bundle_index`` of placement group
        ``placement_group_index``; with ``capture_child_tasks`` its child tasks/actors (e.g. vLLM's
        TP workers) are scheduled in the same placement group."""
        if not self.placement_groups:
            raise ValueError(f"{self.what} has no placement group to schedule bundle {bundle_index} in")
        pg = self.placement_groups[placement_group_index]
        if not 0 <= bundle_index < pg.bundle_count:
            raise ValueError(f"{self.what}: bundle index {bundle_index} out of range for a placement "
                             f"group of {pg.bundle_count} bundles")
        return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bundle_index,
                                                placement_group_capture_child_tasks=capture_child_tasks)

    def launch(self, actor_cls, *args, bundle_index: Optional[int] = None, placement_group_index: int = 0,
               capture_child_tasks: bool = False, options: Optional[dict] = None, **kwargs) -> Any:
        """Start ``actor_cls(*args, **kwargs)`` (a ``@ray.remote`` class) with the Ray actor
        ``options`` and track its handle. With placement groups ``bundle_index`` is required and
        sets the scheduling strategy; without, the options' own ``scheduling_strategy`` applies."""
        options = dict(options or {})
        if self.placement_groups:
            if bundle_index is None:
                raise ValueError(f"{self.what}: launch needs bundle_index (the group has placement groups)")
            if "scheduling_strategy" in options:
                raise ValueError(f"{self.what}: scheduling_strategy comes from the placement group, not options")
            options["scheduling_strategy"] = self.scheduling(bundle_index, placement_group_index=placement_group_index,
                                                             capture_child_tasks=capture_child_tasks)
        elif bundle_index is not None:
            raise ValueError(f"{self.what} has no placement group; bundle_index {bundle_index} makes no sense")
        handle = actor_cls.options(**options).remote(*args, **kwargs)
        self.actors.append(handle)
        return handle

    def kill(self, handle) -> None:
        """Kill one actor launched here (no Ray restart) and stop tracking it."""
        ray.kill(handle, no_restart=True)
        self.actors = [a for a in self.actors if a != handle]

    def shutdown(self) -> None:
        """Kill every tracked actor, then remove the placement groups this group created (an adopted
        one is left to its owner). Safe to call more than once."""
        actors, self.actors = self.actors, []
        for handle in actors:
            ray.kill(handle, no_restart=True)
        pgs, self.placement_groups = self.placement_groups, []
        if self.owns_placement_groups:
            for pg in pgs:
                remove_placement_group(pg)
