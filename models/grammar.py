"""A stochastic molecule-like grammar with long-range constraints, and its exact checker.

A CPU-scale stand-in for SMILES (Weininger 1988) in the sequence experiment of Coscia et
al. (2025): strings over atoms ``C N O``, branches ``( ... )`` and ring-closure digits
``1 2 3``, with the two constraints that make SMILES hard for a sequence model:

- **nested branches**: every ``(`` is closed by a ``)``, a branch is never empty, opens
  only after an atom, a digit or a ``)`` and starts with an atom;
- **paired ring closures**: a digit follows an atom (or another digit on the same atom),
  the first occurrence of a digit opens a ring and the next one closes it, a ring cannot
  close on the atom that opened it, and every ring is closed at the end.

The grammar, in EBNF (``ring`` tokens toggle a digit between open and closed)::

    molecule := chain
    chain    := unit { unit }
    unit     := atom { ring } { "(" chain ")" }
    atom     := "C" | "N" | "O"
    ring     := "1" | "2" | "3"

:func:`sample` draws strings from a stochastic version of it (geometric chain lengths,
branching and ring opening/closing probabilities, rings closed before the chain ends);
:func:`is_valid` is an exact validity checker (one left-to-right scan with a bracket depth
and the open rings); :func:`parse` is an independent recursive-descent parser of the same
language used to test it. :func:`encode`/:func:`decode` map strings to integer tokens with
``BOS``/``EOS``/``PAD``.

References
----------
D. Weininger, "SMILES, a chemical language and information system", J. Chem. Inf. Comput.
Sci. 28, 1988.
D. Coscia, M. Welling, N. Demo and G. Rozza, "BARNN: a Bayesian autoregressive and
recurrent neural network", ICML 2025, arXiv:2501.18665, section 5 (molecule generation).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "ATOMS",
    "DIGITS",
    "SPECIAL",
    "VOCAB",
    "decode",
    "encode",
    "is_valid",
    "parse",
    "sample",
]

ATOMS = ("C", "N", "O")
DIGITS = ("1", "2", "3")
#: Padding, beginning and end of sequence: token ids 0, 1, 2.
SPECIAL = ("<pad>", "<bos>", "<eos>")
VOCAB = (*SPECIAL, *ATOMS, "(", ")", *DIGITS)
_INDEX = {tok: i for i, tok in enumerate(VOCAB)}
PAD, BOS, EOS = 0, 1, 2


def is_valid(s: str) -> bool:
    """Whether ``s`` is a molecule of the grammar (exact; linear time).

    Parameters
    ----------
    s : str

    Returns
    -------
    bool
    """
    if not isinstance(s, str) or not s or s[0] not in ATOMS:
        return False
    depth = 0
    open_at: dict[str, int] = {}  # digit -> index of the atom that opened it
    atom = -1
    prev = ""
    for ch in s:
        if ch in ATOMS:
            atom += 1
        elif ch in DIGITS:
            if prev not in ATOMS and prev not in DIGITS:
                return False
            if ch in open_at:
                if open_at.pop(ch) == atom:
                    return False
            else:
                open_at[ch] = atom
        elif ch == "(":
            if prev not in ATOMS and prev not in DIGITS and prev != ")":
                return False
            depth += 1
        elif ch == ")":
            if depth == 0 or prev == "(":
                return False
            depth -= 1
        else:
            return False
        if prev == "(" and ch not in ATOMS:
            return False
        prev = ch
    return depth == 0 and not open_at and prev != "("


def parse(s: str) -> bool:
    """Independent recursive-descent recogniser of the grammar (the test oracle).

    Parses ``chain`` by the EBNF of the module docstring, collecting the ring digits of
    every atom, then checks the pairing of the digits along the string.
    """
    pos = 0
    rings: list[tuple[str, int]] = []  # (digit, atom number) in string order
    atoms = 0

    def peek():
        return s[pos] if pos < len(s) else ""

    def chain() -> bool:
        if not unit():
            return False
        while peek() in ATOMS and peek():
            if not unit():
                return False
        return True

    def unit() -> bool:
        nonlocal pos, atoms
        if peek() not in ATOMS or not peek():
            return False
        this = atoms
        atoms += 1
        pos += 1
        while peek() in DIGITS and peek():
            rings.append((peek(), this))
            pos += 1
        while peek() == "(":
            pos += 1
            if not chain() or peek() != ")":
                return False
            pos += 1
        return True

    if not isinstance(s, str) or not chain() or pos != len(s):
        return False
    opened: dict[str, int] = {}
    for digit, atom in rings:
        if digit in opened:
            if opened.pop(digit) == atom:
                return False
        else:
            opened[digit] = atom
    return not opened


def _chain(rng, depth, open_rings, atom_count, p):
    out = []
    length = 1 + rng.geometric(p["stop"]) - 1
    for i in range(length):
        out.append(ATOMS[int(np.searchsorted(p["atoms"], rng.random(), side="right"))])
        me = atom_count[0]
        atom_count[0] += 1
        last = i == length - 1
        # close rings opened on earlier atoms (always before the top-level chain ends)
        for d in sorted(open_rings):
            must = last and depth == 0
            if open_rings[d] != me and (must or rng.random() < p["close"]):
                out.append(d)
                del open_rings[d]
        free = [d for d in DIGITS if d not in open_rings]
        if free and not last and rng.random() < p["open"]:
            d = free[0]
            open_rings[d] = me
            out.append(d)
        while depth < p["max_depth"] and not last and rng.random() < p["branch"]:
            out.append("(")
            out.extend(_chain(rng, depth + 1, open_rings, atom_count, p))
            out.append(")")
    return out


def sample(
    rng: np.random.Generator | int,
    num: int,
    *,
    mean_length: float = 6.0,
    branch: float = 0.25,
    ring_open: float = 0.2,
    ring_close: float = 0.35,
    max_depth: int = 3,
    max_chars: int = 40,
) -> list[str]:
    """Draw ``num`` valid molecules from the stochastic grammar.

    Parameters
    ----------
    rng : numpy Generator or int seed
    num : int
        Number of strings.
    mean_length : float
        Mean atoms per chain (geometric); branches are shorter by the same law.
    branch, ring_open, ring_close : float
        Probabilities of opening a branch after an atom, of opening a ring on an atom
        and of closing an open ring on a later atom.
    max_depth : int
        Deepest branch nesting.
    max_chars : int
        Strings longer than this are redrawn.

    Returns
    -------
    list of str
        Every string satisfies :func:`is_valid`.
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num={num!r} is not valid; expected an integer >= 1")
    if not mean_length >= 1:
        raise ValueError(f"mean_length={mean_length!r} is not valid; expected >= 1")
    for name, v in (("branch", branch), ("ring_open", ring_open), ("ring_close", ring_close)):
        if not 0 <= v < 1:
            raise ValueError(f"{name}={v!r} is not valid; expected a probability in [0, 1)")
    rng = np.random.default_rng(rng)
    p = dict(
        stop=1.0 / mean_length,
        atoms=np.array([0.7, 0.9]),  # cumulative: C 0.7, N 0.2, O 0.1
        branch=branch,
        open=ring_open,
        close=ring_close,
        max_depth=max_depth,
    )
    out: list[str] = []
    while len(out) < num:
        open_rings: dict[str, int] = {}
        s = "".join(_chain(rng, 0, open_rings, [0], p))
        if len(s) <= max_chars and not open_rings:
            out.append(s)
    return out


def encode(strings: Sequence[str], max_len: int) -> np.ndarray:
    """Token ids ``(num, max_len + 2)``: ``BOS``, the characters, ``EOS``, then ``PAD``.

    Raises
    ------
    ValueError
        A string longer than ``max_len`` or with a character outside :data:`VOCAB`.
    """
    out = np.full((len(strings), max_len + 2), PAD, dtype=np.int32)
    for i, s in enumerate(strings):
        if len(s) > max_len:
            raise ValueError(f"strings[{i}] has {len(s)} characters; expected <= {max_len}")
        try:
            ids = [_INDEX[c] for c in s]
        except KeyError as err:
            raise ValueError(f"strings[{i}]={s!r} has a character outside VOCAB") from err
        out[i, 0] = BOS
        out[i, 1 : len(s) + 1] = ids
        out[i, len(s) + 1] = EOS
    return out


def decode(tokens: Iterable[Iterable[int]]) -> list[str]:
    """Strings from token ids: the characters after ``BOS`` up to the first ``EOS``/``PAD``."""
    out = []
    for row in tokens:
        chars = []
        for t in row:
            t = int(t)
            if t in (EOS, PAD):
                break
            if t != BOS:
                chars.append(VOCAB[t])
        out.append("".join(chars))
    return out
