"""What the stream's consumers are built from, in both modes.

The Faust worker (stream/worker.py) and the embedded server (stream/embedded.py) run the
same consumers (sessions, archive, datasets, live models) over their own log and dead-letter
store; `StreamParts` builds what they share once, from settings and the stores, so the two
cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

from kernel.artifact_store import ArtifactStore
from kernel.datasets import DatasetStore
from kernel.settings import Settings
from stream.dead_letters import DeadLetters, Postbox
from stream.live_state import LiveModels
from stream.metrics import StreamMetrics
from stream.session import Limits, limits_from
from stream.stores import Stores


@dataclass(frozen=True)
class StreamParts:
    stores: Stores
    letters: DeadLetters
    metrics: StreamMetrics
    limits: Limits
    live: LiveModels  # the HRNN versions users' states follow, as the API published them
    datasets: DatasetStore  # where PutItems/PutUsers records land

    @classmethod
    def of(cls, settings: Settings, stores: Stores, letters: DeadLetters,
           metrics: StreamMetrics) -> StreamParts:
        return cls(stores, letters, metrics, limits_from(settings),
                   LiveModels(settings.data_dir, stores.models, ArtifactStore.of(settings)),
                   DatasetStore.of(settings))

    def postbox(self, consumer: str) -> Postbox:
        """Where `consumer`'s records that it cannot handle go: dead letters, counted."""
        return Postbox(self.letters, consumer, self.metrics.dead)
