"""What a run did, per stage and per model call: --trace prints it, the run log stores it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageStats:
    index: int
    name: str
    items_in: int = 0
    items_out: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the agent chose, in its words

    def line(self) -> str:
        return (f"stage {self.index + 1} {self.name}: {self.items_in} in, {self.items_out} out, "
                f"{self.calls} calls, {self.tokens_in} tokens in, {self.tokens_out} tokens out, "
                f"{self.seconds:.2f} s" + "".join(f"; {note}" for note in self.notes))


@dataclass
class Call:
    stage: int
    agent: str
    prompt: str
    output: str
    tokens_in: int
    tokens_out: int
    seconds: float


@dataclass
class Trace:
    stages: list[StageStats] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
