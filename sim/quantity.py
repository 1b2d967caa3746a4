"""Kubernetes resource quantities (`500m`, `1.5`, `32Gi`, `1e3`, `128974848`), parsed exactly
(as fractions) the way k8s.io/apimachinery/pkg/api/resource reads them.

The scheduler counts CPU in millicores and everything else in whole units (bytes for
memory), rounding up as the API server does when it canonicalises a quantity.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

from kubequeue.errors import KubeQueueError

# <signedNumber><suffix>: the number may be `1`, `1.5`, `1.` or `.5`; the suffix is a binary
# SI (Ki..Ei), a decimal SI (n u m "" k M G T P E) or a decimal exponent (e3, E-2).
_QUANTITY = re.compile(r"^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}


class QuantityError(KubeQueueError, ValueError):
    """A string is not a Kubernetes resource quantity."""


@lru_cache(maxsize=4096)
def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a quantity; raises QuantityError with the API's wording."""
    if isinstance(text, bool):
        raise QuantityError(f"quantities must match the regular expression: {text!r}")
    if isinstance(text, int | float):
        return Fraction(text)
    match = _QUANTITY.match(text) if isinstance(text, str) else None
    if match is None:
        raise QuantityError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}"
        )
    sign, number, suffix = match.groups()
    value = Fraction(number)
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix and suffix[0] in "eE":
        value *= Fraction(10) ** int(suffix[1:])
    else:
        value *= _DECIMAL[suffix or ""]
    return -value if sign == "-" else value


def milli(text: str | int | float) -> int:
    """CPU in millicores, rounded up (`100m` → 100, `0.5` → 500, `1` → 1000)."""
    return math.ceil(parse_quantity(text) * 1000)


def units(text: str | int | float) -> int:
    """Any other resource in whole units, rounded up (`1Gi` → 1073741824)."""
    return math.ceil(parse_quantity(text))


@lru_cache(maxsize=4096)
def amount(resource: str, text: str | int | float) -> int:
    """A request/capacity in the scheduler's integer units for `resource`."""
    return milli(text) if resource == "cpu" else units(text)
