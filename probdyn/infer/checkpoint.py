"""Checkpoint files for :func:`probdyn.fit`: fingerprints, atomic writes, resume.

A checkpoint at ``path`` (e.g. ``"run.nc"``) is two files:

- ``path`` itself, a netCDF InferenceData readable with :func:`arviz.from_netcdf` at any
  time: the draws so far while running (root attribute ``probdyn_checkpoint="partial"``),
  the full result once done (``"complete"``);
- ``path + ".state.pkl"``, a pickle of NumPy arrays holding the sampler (or optimiser)
  state, the draws so far and the fingerprint: the single source of truth for resuming.
  It is removed once the run is complete. Only resume from checkpoints you wrote
  yourself: unpickling runs code named in the file.

Both are written to a temporary file in the same folder and moved into place with
:func:`os.replace`, so a process killed at any moment leaves either the old or the new
version, never a torn file. The state file is written before the netCDF file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

__all__ = ["Checkpoint", "describe", "fingerprint"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def describe(obj: Any, depth: int = 0) -> str:
    """A stable, address-free description of ``obj`` (arrays by dtype, shape and hash).

    Functions are described by module, qualified name, a hash of their source (or
    bytecode), defaults and closure values, so two optimisers with different learning
    rates differ while the same options give the same string in every process.
    """
    if depth > 6:
        return type(obj).__qualname__
    d = functools.partial(describe, depth=depth + 1)
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return repr(obj)
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        if isinstance(obj, jax.Array) and jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        arr = np.asarray(obj)
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]
        return f"array({arr.dtype}, {arr.shape}, {digest})"
    if isinstance(obj, Mapping):
        items = sorted((str(k), d(v)) for k, v in obj.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        fields = ", ".join(f"{k}={d(getattr(obj, k))}" for k in obj._fields)
        return f"{type(obj).__qualname__}({fields})"
    if isinstance(obj, (list, tuple)):
        return type(obj).__name__ + "(" + ", ".join(d(v) for v in obj) + ")"
    if isinstance(obj, functools.partial):
        return f"partial({d(obj.func)}, {d(obj.args)}, {d(obj.keywords)})"
    if inspect.isfunction(obj):
        try:
            body = inspect.getsource(obj)
        except (OSError, TypeError):
            body = obj.__code__.co_code.hex() + repr(obj.__code__.co_consts)
        closure = [c.cell_contents for c in (obj.__closure__ or ()) if _has_contents(c)]
        src = hashlib.sha256(_ADDRESS.sub("", body).encode()).hexdigest()[:16]
        # No module name: the same model run as a script (``__main__``) or imported must match.
        return (
            f"{obj.__qualname__}[{src}]"
            f"({d(obj.__defaults__)}, {d(obj.__kwdefaults__)}, {d(closure)})"
        )
    if inspect.isclass(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}"
    if dataclasses.is_dataclass(obj) or hasattr(obj, "__dict__"):
        state = {k: v for k, v in vars(obj).items() if not k.startswith("__")}
        return f"{type(obj).__qualname__}({d(state)})"
    return _ADDRESS.sub("", repr(obj))


def _short(obj: Any) -> str:
    """A short, address-free string for ``idata.attrs`` (functions by qualified name)."""
    if isinstance(obj, functools.partial):
        parts = [_short(obj.func), *map(_short, obj.args)]
        parts += [f"{k}={_short(v)}" for k, v in obj.keywords.items()]
        return f"partial({', '.join(parts)})"
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, (np.ndarray, jax.Array)):
        return f"array(dtype={obj.dtype}, shape={tuple(obj.shape)})"
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj).__qualname__
    return _ADDRESS.sub("", repr(obj))


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _hash_tree(tree: Any) -> str:
    leaves, treedef = jax.tree.flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        h.update(describe(leaf).encode())
    return h.hexdigest()[:32]


def fingerprint(model: Callable, args: tuple, kwargs: Mapping, **settings: Any) -> dict:
    """What identifies a run: model, data and every setting that changes the result.

    Parameters
    ----------
    model : callable
        The NumPyro model (its module, name and source are hashed).
    args, kwargs : tuple, dict
        Model arguments; arrays are hashed by dtype, shape and bytes.
    **settings
        Method, options, sizes, seed, ... (described with :func:`describe`).

    Returns
    -------
    dict of str to str
        One entry per component, so that a mismatch can be reported by name.
    """
    fp = {"model": describe(model), "model_args": _hash_tree((tuple(args), dict(kwargs)))}
    for key, value in sorted(settings.items()):
        fp[key] = describe(value)
    return fp


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@dataclasses.dataclass(frozen=True)
class _KeyData:
    """A typed PRNG key array stored as its raw data."""

    data: np.ndarray
    impl: str


def to_numpy(tree: Any) -> Any:
    """Copy a pytree of JAX arrays to the host as NumPy arrays (typed keys kept)."""

    def leaf(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return _KeyData(np.asarray(jax.random.key_data(x)), str(jax.random.key_impl(x)))
        if isinstance(x, (jax.Array, np.ndarray, np.generic)):
            return np.array(x)
        return x

    return jax.tree.map(leaf, tree)


def from_numpy(tree: Any) -> Any:
    """Inverse of :func:`to_numpy`: NumPy leaves back to JAX arrays."""

    def leaf(x):
        if isinstance(x, _KeyData):
            return jax.random.wrap_key_data(jnp.asarray(x.data), impl=x.impl)
        if isinstance(x, (np.ndarray, np.generic)):
            return jnp.asarray(x)
        return x

    return jax.tree.map(leaf, tree, is_leaf=lambda x: isinstance(x, _KeyData))


def _load_netcdf(path: Path) -> az.InferenceData:
    idata = az.from_netcdf(str(path))
    for group in idata.groups():
        getattr(idata, group).load()
    return idata


class Checkpoint:
    """Save and resume one run at ``path`` (see the module docstring for the layout).

    Parameters
    ----------
    path : str or Path
        The netCDF file; the state file is ``path + ".state.pkl"``.
    fp : dict of str to str
        The run's :func:`fingerprint`.
    """

    def __init__(self, path: str | os.PathLike, fp: Mapping[str, str]):
        self.path = Path(path)
        self.state_path = Path(str(self.path) + ".state.pkl")
        self.fp = dict(fp)
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"checkpoint={str(path)!r} is a folder; expected a file path")
        if not self.path.parent.exists():
            raise ValueError(
                f"checkpoint={str(path)!r}: folder {str(self.path.parent)!r} does not exist"
            )

    def _check(self, stored: Mapping[str, str] | None, where: Path) -> None:
        if stored is None:
            raise ValueError(
                f"checkpoint={str(self.path)!r}: {str(where)!r} exists but was not written "
                "by probdyn.fit; refusing to overwrite it. Delete it or choose another path."
            )
        diff = sorted(k for k in set(stored) | set(self.fp) if stored.get(k) != self.fp.get(k))
        if diff:
            raise ValueError(
                f"checkpoint={str(self.path)!r} was written by a different run (differs in "
                f"{', '.join(diff)}); refusing to resume or overwrite it. Delete it, choose "
                "another path, or call fit with the original model, data and arguments."
            )

    def load_complete(self) -> az.InferenceData | None:
        """The finished result if ``path`` holds one for this run, else None.

        Raises
        ------
        ValueError
            If ``path`` (or its state file) exists but belongs to another run or to no
            probdyn run.
        """
        if self.state_path.exists():
            self._check(self._read_state().get("fingerprint"), self.state_path)
        if not self.path.exists():
            return None
        try:
            with xr.open_dataset(self.path) as root:
                attrs = dict(root.attrs)
        except Exception:  # noqa: BLE001 - not a netCDF file at all
            attrs = {}
        raw = attrs.get("probdyn_fingerprint")
        self._check(json.loads(raw) if isinstance(raw, str) else None, self.path)
        if attrs.get("probdyn_checkpoint") != "complete":
            return None
        idata = _load_netcdf(self.path)
        for key in ("probdyn_checkpoint", "probdyn_fingerprint", "probdyn_draws_done"):
            idata.attrs.pop(key, None)
        if self.state_path.exists():  # killed between the final write and the cleanup
            os.remove(self.state_path)
        return idata

    def _read_state(self) -> dict:
        with open(self.state_path, "rb") as f:
            return pickle.load(f)

    def load_progress(self) -> dict | None:
        """The saved progress (a dict of NumPy pytrees) for this run, or None."""
        if not self.state_path.exists():
            return None
        payload = self._read_state()
        self._check(payload.get("fingerprint"), self.state_path)
        return payload

    def _attrs(self, idata: az.InferenceData, status: str, done: int) -> az.InferenceData:
        idata.attrs["probdyn_checkpoint"] = status
        idata.attrs["probdyn_fingerprint"] = json.dumps(self.fp, sort_keys=True)
        idata.attrs["probdyn_draws_done"] = int(done)
        return idata

    def save_progress(self, payload: dict, partial: az.InferenceData | None, done: int) -> None:
        """Write the state file, then the partial netCDF, each atomically."""
        payload = dict(payload, fingerprint=self.fp)
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

        def write_state(tmp):
            with open(tmp, "wb") as f:
                f.write(data)

        _atomic_write(self.state_path, write_state)
        if partial is not None:
            self._attrs(partial, "partial", done)
            _atomic_write(self.path, lambda tmp: partial.to_netcdf(tmp))

    def save_complete(self, idata: az.InferenceData, done: int) -> None:
        """Write the final result to ``path`` and remove the state file."""
        out = az.InferenceData(attrs=dict(idata.attrs), **{g: idata[g] for g in idata.groups()})
        self._attrs(out, "complete", done)
        _atomic_write(self.path, lambda tmp: out.to_netcdf(tmp))
        if self.state_path.exists():
            os.remove(self.state_path)
