"""The recurrent states of a variant: one [K, V] matrix by default, or several (a matrix plus a
normaliser vector, say), declared with `state=("[K, V]", "[K]")`. Each state has fixed names in
the IR and in the generated kernels; the first keeps the plain ones (S, S_next, dS, h0, ...)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import CallbackError

TILES = {"[K,V]": ("K", "V"), "[K]": ("K",), "[V]": ("V",)}


@dataclass(frozen=True)
class State:
    index: int
    tile: tuple[str, ...]

    def _name(self, base: str, sep: str = "") -> str:
        return base if self.index == 0 else f"{base}{sep}{self.index}"

    name = property(lambda self: self._name("S"))
    next = property(lambda self: f"{self.name}_next")
    grad = property(lambda self: self._name("dS"))
    grad_next = property(lambda self: f"{self.grad}_next")

    def pointer(self, base: str) -> str:
        """h0, ht, states, dstates, dht, dh0 -> that buffer's pointer name for this state."""
        return self._name(base, "_")

    def sizes(self, K: int, V: int) -> tuple:
        return tuple({"K": K, "V": V}[d] for d in self.tile)

    @property
    def shape_code(self) -> str:
        return "".join(self.tile)


def parse_states(spec) -> list[State]:
    specs = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for i, s in enumerate(specs):
        key = str(s).replace(" ", "")
        if key not in TILES:
            raise CallbackError("state", None, f"unknown state shape {s!r}",
                                f"declare each state as one of {', '.join(TILES)}")
        out.append(State(i, TILES[key]))
    if not out or out[0].tile != ("K", "V"):
        raise CallbackError("state", None, "the first state must be the [K, V] matrix",
                            'declare state=("[K, V]", ...) with the matrix first')
    return out
