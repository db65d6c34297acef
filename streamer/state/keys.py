"""Redis key layout. Every key of a state unit shares the unit's hash tag
(``{tree:fingerprint}``), so a unit lives in one Redis Cluster slot and its
Lua script may touch all of it; per-tree bookkeeping shares ``{tree}``."""

from __future__ import annotations

from dataclasses import dataclass

from streamer.windows.units import Unit


@dataclass(frozen=True)
class Keys:
    namespace: str = "ns"

    def unit(self, unit: Unit, suffix: str = "") -> str:
        return f"{self.namespace}:{unit.tag}:{unit.part}{suffix}"

    def applied(self, unit: Unit) -> str:
        """Hash partition -> last applied offset: the exactly-once guard."""
        return self.unit(unit, "applied")

    def tree(self, tree: str, suffix: str) -> str:
        return f"{self.namespace}:{{{tree}}}:{suffix}"

    def watermark(self, tree: str) -> str:
        return self.tree(tree, "wm")

    def judged_watermark(self, tree: str) -> str:
        """Hash partition -> greatest event time the verdict script accepted: the
        watermark lateness is judged by, ahead of ``watermark`` (advanced after
        the apply) while a partition's next batch is judged during this one's apply."""
        return self.tree(tree, "wj")

    def insert_ids(self, tree: str) -> str:
        return self.tree(tree, "ids")

    def insert_id_gc(self, tree: str) -> str:
        """Hash partition -> first UTC day whose list of insert ids may still exist."""
        return self.tree(tree, "idg")

    def insert_id_days(self, tree: str) -> str:
        """Prefix of the lists ``idd:<partition>:<day>`` of insert ids to forget."""
        return self.tree(tree, "idd")

    def verdict_log(self, tree: str, partition: str) -> str:
        """List of ``partition``'s recent verdict segments (a record judged
        again gets the verdict it got)."""
        return self.tree(tree, f"vl:{partition}")

    def insert_id_lists(self, tree: str) -> str:
        """Every per-day list of insert ids of ``tree`` (for ``SCAN MATCH``)."""
        return self.insert_id_days(tree) + ":*"

    def member(self, group: str, instance: str) -> str:
        """The member id an instance of consumer group ``group`` last had
        (streamer/worker/membership.py)."""
        return f"{self.namespace}:member:{group}:{instance}"

    def pattern(self) -> str:
        """Every key of this namespace (for ``SCAN MATCH``)."""
        return f"{self.namespace}:*"
