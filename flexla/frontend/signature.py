"""The arguments of a variant: q, k, v and the extras, each with the tile shape a callback sees.

An extra is declared by the tile shape its callback receives, as an annotation on `intra`
(`def intra(q, k, v, g: "[C, K]")`) or inferred from the tensors of the first call:

    call shape      tile     meaning
    [B, T, H]       [C]      one value per token and head (a scalar gate)
    [B, T, H, K]    [C, K]   a vector per token (a per-key gate)
    [B, T, H, V]    [C, V]   a vector per token over the value dim
    [H]             []       one value per head (a fixed decay)
    [H, K]          [K]      a vector per head
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from .errors import CallbackError, CallError

TILES = {"[C]": ("C",), "[C,K]": ("C", "K"), "[C,V]": ("C", "V"), "[]": (), "[K]": ("K",), "[V]": ("V",)}


@dataclass(frozen=True)
class Extra:
    name: str
    tile: tuple[str, ...]
    # whether the backward computes this extra's gradient: not where the call's tensor does not
    # require one (retention's fixed decays), so that work and what only it needs are left out
    grad: bool = True

    @property
    def key(self) -> tuple:
        """What compiled modules are told apart by."""
        return (self.name, self.tile) if self.grad else (self.name, self.tile, "no grad")

    @property
    def per_token(self) -> bool:
        return self.tile[:1] == ("C",)

    @property
    def feature(self) -> str | None:
        """"K" or "V" when the extra carries a vector per token or head, else None."""
        rest = self.tile[1:] if self.per_token else self.tile
        return rest[0] if rest else None

    def call_shape(self, B, T, H, K, V) -> tuple:
        size = {"K": K, "V": V}
        head = (B, T, H) if self.per_token else (H,)
        return head + ((size[self.feature],) if self.feature else ())

    def describe(self) -> str:
        return "[" + ", ".join(self.call_shape("B", "T", "H", "K", "V")) + "]"


def extra_names(intra) -> list[str]:
    params = list(inspect.signature(intra).parameters.values())
    if len(params) < 3 or any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise CallbackError("intra", None, "intra must take plain positional arguments (q, k, v, *extras)",
                            "write `def intra(q, k, v, g, ...)` with one named argument per extra input")
    reserved = {"q", "k", "v", "o", "S", "scale", "do", "dS_next"}
    for p in params[3:]:
        if p.name in reserved or p.name.startswith("d_"):
            raise CallbackError("intra", f"argument {p.name}", f"the extra input name `{p.name}` is reserved",
                                f"rename it; reserved: {', '.join(sorted(reserved))} and names starting with d_")
    return [p.name for p in params[3:]]


def declared_tiles(intra) -> dict[str, tuple]:
    """Tile shapes given as annotations on intra's extras, e.g. `g: "[C, K]"`."""
    out = {}
    for p in list(inspect.signature(intra).parameters.values())[3:]:
        if p.annotation is inspect.Parameter.empty:
            continue
        key = str(p.annotation).replace(" ", "")
        if key not in TILES:
            raise CallbackError("intra", f"argument {p.name}", f"unknown tile annotation {p.annotation!r}",
                                f"annotate with one of {', '.join(TILES)}")
        out[p.name] = TILES[key]
    return out


def candidate_tiles(variant: str, name: str, x, B, T, H, K, V) -> list[tuple]:
    """The tile shapes an extra of the given call shape could have, most likely first."""
    s = tuple(x.shape)
    if s == (B, T, H):
        return [("C",)]
    if s == (H,):
        return [()]
    feats = [f for f, n in (("K", K), ("V", V)) if len(s) in (2, 4) and s[-1] == n]
    if feats and s[:-1] == (B, T, H):
        return [("C", f) for f in feats]
    if feats and s[:-1] == (H,):
        return [(f,) for f in feats]
    raise CallError(variant, f"extra input `{name}` has shape {list(s)}, which fits no extra role "
                             f"(B={B}, T={T}, H={H}, K={K}, V={V})",
                    "pass [B, T, H], [B, T, H, K], [B, T, H, V], [H] or [H, K]")
