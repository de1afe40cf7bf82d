"""Physical quantities written as '<number> <unit>' in profiles, such as '136 GB/s' or '300 us'.

Each is parsed to its base unit (MAC/s, B/s, s, J/MAC, J/B), refused outside a plausible range (a typo,
not a chip), and written back as readable text that parses to exactly the same value.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class Quantity:
    """A physical quantity written as '<number> <unit>', such as '136 GB/s'."""

    what: str                      # "a bandwidth"
    example: str                   # "136 GB/s"
    units: dict[str, Decimal]      # accepted unit -> factor to the base unit
    display: tuple[str, ...]       # units considered when writing, largest first
    allow_zero: bool = False
    preferred: str | None = None   # unit written whenever the number stays readable in it
    plausible: tuple[float, float] = (0.0, math.inf)   # in the base unit: outside it is a typo, not a chip

    def parse(self, value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"got {value!r} without a unit, expected {self.what} such as '{self.example}'")
        if not isinstance(value, str):
            raise ValueError(f"got {short(value)}, expected {self.what} such as '{self.example}'")
        match = _NUMBER_WITH_UNIT.match(value)
        if not match:
            raise ValueError(f"got {short(value)}, expected {self.what} such as '{self.example}'")
        unit = match[2]
        if unit not in self.units:
            raise ValueError(f"unknown unit {unit!r} in {short(value)}, expected one of {', '.join(self.display)}")
        try:
            number = float(Decimal(match[1]) * self.units[unit])
        except (ArithmeticError, InvalidOperation, OverflowError):
            number = math.inf
        if not math.isfinite(number) or number < 0 or (number == 0 and not self.allow_zero):
            bound = "zero or more" if self.allow_zero else "above zero"
            raise ValueError(f"got {short(value)}, expected {self.what} {bound}, such as '{self.example}'")
        low, high = self.plausible
        if number and not low <= number <= high:
            raise ValueError(f"got {short(value)}, expected {self.what} between {self.format(low)} and "
                             f"{self.format(high)}")
        return number

    def format(self, value: float) -> str:
        """Readable text that parses back to exactly `value`."""
        def rank(unit: str) -> int:
            scaled = value / float(self.units[unit])
            if unit == self.preferred and 0.01 <= scaled < 1e5:
                return 0
            return 1 if 1 <= scaled < 1000 else 2

        for unit in sorted(self.display, key=rank):
            scaled = value / float(self.units[unit])
            for number in (f"{scaled:.15g}", _plain(scaled)):
                text = f"{number} {unit}"
                try:
                    if self.parse(text) == value:
                        return text
                except ValueError:
                    pass
        base = next(unit for unit, factor in self.units.items() if factor == 1)
        return f"{value!r} {base}"


_NUMBER_WITH_UNIT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S+)\s*$")


def _plain(number: float) -> str:
    text = repr(number)
    return text[:-2] if text.endswith(".0") else text


def _scaled(base: str, prefixes: dict[str, int]) -> dict[str, Decimal]:
    return {prefix + base: Decimal(10) ** power for prefix, power in prefixes.items()}


_BIG = {"P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "": 0}
_SMALL = {"": 0, "m": -3, "u": -6, "µ": -6, "n": -9, "p": -12, "f": -15}

THROUGHPUT = Quantity("a throughput in MAC/s (1 MAC = 2 ops)", "45 TMAC/s", _scaled("MAC/s", _BIG),
                      tuple(p + "MAC/s" for p in _BIG), plausible=(1e3, 1e18))
BANDWIDTH = Quantity("a bandwidth", "136 GB/s",
                     {**_scaled("B/s", _BIG), **{p + "iB/s": Decimal(1024) ** n
                                                 for n, p in enumerate(("K", "M", "G", "T"), 1)}},
                     tuple(p + "B/s" for p in _BIG), plausible=(1e3, 1e16))
DURATION = Quantity("a duration", "300 us", _scaled("s", _SMALL), ("s", "ms", "us", "ns"), allow_zero=True,
                    plausible=(1e-15, 3600.0))
ENERGY_PER_MAC = Quantity("an energy per MAC", "0.2 pJ/MAC", _scaled("J/MAC", _SMALL),
                          ("J/MAC", "mJ/MAC", "uJ/MAC", "nJ/MAC", "pJ/MAC", "fJ/MAC"), preferred="pJ/MAC")
ENERGY_PER_BYTE = Quantity("an energy per byte", "160 pJ/B", _scaled("J/B", _SMALL),
                           ("J/B", "mJ/B", "uJ/B", "nJ/B", "pJ/B", "fJ/B"), preferred="pJ/B")


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
