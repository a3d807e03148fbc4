"""Checkpoint files for :func:`probdyn.fit`: fingerprints, atomic writes, resume.

A checkpoint at ``path`` (e.g. ``"run.nc"``) is two files:

- ``path`` itself, a netCDF ArviZ result readable with :func:`arviz.from_netcdf` at any
  time: the draws so far while running (root attribute ``probdyn_checkpoint="partial"``),
  the full result once done (``"complete"``), with the run's fingerprint as JSON in the
  root attribute ``probdyn_fingerprint``;
- ``path + ".state.npz"``, the single source of truth for resuming: a NumPy ``.npz``
  archive of plain numeric arrays, read with ``allow_pickle=False``. Its member
  ``__meta__`` is UTF-8 JSON (format name and version, the fingerprint, counters such as
  ``draws_done``, the names of the saved arrays and the structure of the sampler state);
  the other members are the leaves of the sampler (or optimiser) state, PRNG keys as their
  raw ``uint32`` key data, and the draws (or losses) so far. It is removed once the run is
  complete.

Nothing in either file is ever executed: no pickle is read (an old-style
``.state.pkl`` beside ``path`` is refused, never opened), the JSON is checked against
this run's fingerprint before any array is read, the state is rebuilt into a pytree
that this process builds itself (its structure, shapes, dtypes and key implementation
must match), and the counters are cross-checked against the saved arrays.

Both files are written to a temporary file in the same folder and moved into place with
:func:`os.replace`, so a process killed at any moment leaves either the old or the new
version, never a torn file; temporary files left by a killed process are removed when
the checkpoint is next opened. The state file is written before the netCDF file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from probdyn.report import _arviz as _az
from probdyn.report._arviz import Result

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
    """A typed PRNG key array held as its raw data (in memory only)."""

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


def _leaf_spec(x: Any) -> tuple[tuple[int, ...], str, str | None]:
    """(shape, dtype, key implementation or None) of a state leaf, keys as key data."""
    if isinstance(x, _KeyData):
        return tuple(x.data.shape), str(x.data.dtype), x.impl
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(x)
        return tuple(data.shape), str(data.dtype), str(jax.random.key_impl(x))
    if isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)):
        return tuple(x.shape), str(x.dtype), None
    arr = np.asarray(x)
    return tuple(arr.shape), str(arr.dtype), None


_META = "__meta__"
_FORMAT = "probdyn-checkpoint-state"
_VERSION = 1


def _encode(payload: Mapping[str, Any], fp: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The ``.npz`` members for ``payload``: scalars to JSON, arrays and pytrees to arrays."""
    meta: dict[str, Any] = {
        "format": _FORMAT,
        "version": _VERSION,
        "fingerprint": dict(fp),
        "values": {},
        "arrays": [],
        "dicts": {},
        "trees": {},
    }
    members: dict[str, np.ndarray] = {}
    for key, value in payload.items():
        if isinstance(value, (str, bool, int, float, np.integer)) and not isinstance(
            value, np.ndarray
        ):
            meta["values"][key] = value.item() if isinstance(value, np.integer) else value
        elif isinstance(value, Mapping):
            names = list(value)
            meta["dicts"][key] = names
            for i, name in enumerate(names):
                members[f"dict.{key}.{i}"] = np.asarray(value[name])
        elif isinstance(value, (np.ndarray, np.generic)):
            meta["arrays"].append(key)
            members[f"array.{key}"] = np.asarray(value)
        else:  # a pytree (sampler or optimiser state)
            leaves, treedef = jax.tree.flatten(value, is_leaf=lambda x: isinstance(x, _KeyData))
            meta["trees"][key] = {"treedef": str(treedef), "keys": []}
            for i, leaf in enumerate(leaves):
                impl = _leaf_spec(leaf)[2]
                meta["trees"][key]["keys"].append(impl)
                data = leaf.data if isinstance(leaf, _KeyData) else np.asarray(leaf)
                members[f"tree.{key}.{i}"] = np.asarray(data)
    for name, arr in members.items():
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"checkpoint member {name!r} has dtype {arr.dtype}; expected numbers")
    members[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return members


def _load_netcdf(path: Path) -> Result:
    return _az.from_netcdf(path)


class Checkpoint:
    """Save and resume one run at ``path`` (see the module docstring for the layout).

    Opening a checkpoint checks, before any sampling: that ``path`` is not a folder, that
    its folder exists and is writable (a test file is created and removed), and that no
    legacy pickle state file lies beside it; and it removes temporary files that a process
    killed mid-write left behind.

    Parameters
    ----------
    path : str or Path
        The netCDF file; the state file is ``path + ".state.npz"``.
    fp : dict of str to str
        The run's :func:`fingerprint`.
    """

    def __init__(self, path: str | os.PathLike, fp: Mapping[str, str]):
        self.path = Path(path)
        self.state_path = Path(str(self.path) + ".state.npz")
        self.fp = dict(fp)
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"checkpoint={str(path)!r} is a folder; expected a file path")
        if not self.path.parent.is_dir():
            raise ValueError(
                f"checkpoint={str(path)!r}: folder {str(self.path.parent)!r} does not exist"
            )
        legacy = Path(str(self.path) + ".state.pkl")
        if legacy.exists() or legacy.is_symlink():
            raise ValueError(
                f"checkpoint={str(path)!r}: found {str(legacy)!r}, a pickle state file. "
                "probdyn never reads pickle files (loading one can run arbitrary code) and "
                "has not opened it; delete it (the run then starts afresh) or choose "
                "another path"
            )
        for stale in self.path.parent.glob(f".{glob_escape(self.path.name)}.*.tmp"):
            if stale.is_file() or stale.is_symlink():  # left by a process killed mid-write
                stale.unlink()
        try:
            fd, probe = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            os.close(fd)
            os.remove(probe)
        except OSError as err:
            raise ValueError(
                f"checkpoint={str(path)!r}: cannot write in folder {str(self.path.parent)!r} "
                f"({err.strerror or err}); choose a writable path"
            ) from None

    def corrupt(self, reason: str) -> ValueError:
        """The error for a state file that cannot be used (to raise)."""
        return ValueError(
            f"checkpoint={str(self.path)!r}: the state file {str(self.state_path)!r} cannot "
            f"be used: {reason}. Delete it (and {str(self.path)!r}) to start the run afresh"
        )

    def _check(self, stored: Mapping[str, str] | None, where: Path) -> None:
        if stored is None:
            raise ValueError(
                f"checkpoint={str(self.path)!r}: {str(where)!r} exists but was not written by "
                "probdyn.fit (or is truncated: it is not a readable probdyn checkpoint); "
                "refusing to overwrite it. Delete it or choose another path."
            )
        if not isinstance(stored, Mapping):
            raise self.corrupt("its fingerprint is not a JSON object")
        diff = sorted(k for k in set(stored) | set(self.fp) if stored.get(k) != self.fp.get(k))
        if diff:
            raise ValueError(
                f"checkpoint={str(self.path)!r} was written by a different run (differs in "
                f"{', '.join(diff)}); refusing to resume or overwrite it. Delete it, choose "
                "another path, or call fit with the original model, data and arguments."
            )

    def _netcdf_attrs(self) -> dict | None:
        """Root attributes of ``path`` (None when it cannot be read as netCDF)."""
        try:
            with xr.open_dataset(self.path) as root:
                return dict(root.attrs)
        except Exception:  # noqa: BLE001 - not a netCDF file, or a truncated one
            return None

    def load_complete(self) -> Result | None:
        """The finished result if ``path`` holds one for this run, else None.

        Raises
        ------
        ValueError
            If ``path`` (or its state file) exists but belongs to another run or to no
            probdyn run, or the state file is unreadable.
        """
        has_state = self.state_path.exists()
        if has_state:
            self._read_meta()  # checks the fingerprint
        if not self.path.exists():
            return None
        attrs = self._netcdf_attrs()
        if attrs is None and has_state:
            # The state file is the truth; the partial netCDF is rewritten from it.
            warnings.warn(
                f"checkpoint={str(self.path)!r} is not readable (truncated?); resuming from "
                f"{str(self.state_path)!r}, which is valid, and rewriting it",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        raw = (attrs or {}).get("probdyn_fingerprint")
        try:
            stored = json.loads(raw) if isinstance(raw, str) else None
        except json.JSONDecodeError:
            stored = None
        self._check(stored, self.path)
        if attrs.get("probdyn_checkpoint") != "complete":
            return None
        idata = _load_netcdf(self.path)
        for key in ("probdyn_checkpoint", "probdyn_fingerprint", "probdyn_draws_done"):
            idata.attrs.pop(key, None)
        if has_state:  # killed between the final write and the cleanup
            os.remove(self.state_path)
        return idata

    def _read_meta(self) -> dict:
        """The state file's JSON, fingerprint checked; nothing else is read."""
        try:
            with np.load(self.state_path, allow_pickle=False) as npz:
                raw = npz[_META]
            meta = json.loads(raw.tobytes().decode("utf-8"))
        except (
            OSError,
            ValueError,
            KeyError,
            EOFError,
            TypeError,
            AttributeError,
            zipfile.BadZipFile,
        ) as err:
            raise self.corrupt(
                f"not a readable .npz archive ({type(err).__name__}: {err})"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise self.corrupt(f"its {_META} is not a {_FORMAT!r} header")
        if meta.get("version") != _VERSION:
            raise self.corrupt(f"format version {meta.get('version')!r}; expected {_VERSION}")
        self._check(meta.get("fingerprint"), self.state_path)
        return meta

    def has_progress(self) -> bool:
        """True when a state file for this run exists (its fingerprint is checked)."""
        if not self.state_path.exists():
            return False
        self._read_meta()
        return True

    def load_progress(self, templates: Mapping[str, tuple[Any, tuple[int, ...]]]) -> dict | None:
        """The saved progress for this run, or None when there is no state file.

        Parameters
        ----------
        templates : dict of str to (pytree, tuple of int)
            For each saved pytree (e.g. ``"state"``): a pytree of this process with the
            expected structure, and the extra leading axes (e.g. ``(num_chains,)``) the
            saved leaves have. Leaves must match its structure, shapes, dtypes and PRNG key
            implementations; typed keys are rebuilt with the template's implementation.

        Returns
        -------
        dict or None
            Scalars, NumPy arrays, dicts of NumPy arrays, and pytrees of JAX arrays.
        """
        if not self.state_path.exists():
            return None
        meta = self._read_meta()
        try:
            with np.load(self.state_path, allow_pickle=False) as npz:
                members = {name: npz[name] for name in npz.files if name != _META}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise self.corrupt(f"truncated or corrupt ({type(err).__name__}: {err})") from None
        try:
            out: dict[str, Any] = dict(meta["values"])
            for key in meta["arrays"]:
                out[key] = members[f"array.{key}"]
            for key, names in meta["dicts"].items():
                out[key] = {name: members[f"dict.{key}.{i}"] for i, name in enumerate(names)}
            for key, info in meta["trees"].items():
                if key not in templates:
                    raise self.corrupt(f"unexpected saved tree {key!r}")
                leaves = [members[f"tree.{key}.{i}"] for i in range(len(info["keys"]))]
                out[key] = self._rebuild(key, info, leaves, *templates[key])
        except KeyError as err:
            raise self.corrupt(f"member {err} is missing") from None
        except (TypeError, AttributeError) as err:
            raise self.corrupt(f"malformed header ({err})") from None
        return out

    def _rebuild(self, key: str, info: dict, leaves: list, template: Any, lead: tuple) -> Any:
        tleaves, treedef = jax.tree.flatten(template, is_leaf=lambda x: isinstance(x, _KeyData))
        if info.get("treedef") != str(treedef) or len(leaves) != len(tleaves):
            raise self.corrupt(
                f"the saved {key!r} has another structure than this sampler's (saved by another "
                "version of probdyn or NumPyro?)"
            )
        rebuilt = []
        for i, (saved, tmpl, impl) in enumerate(zip(leaves, tleaves, info["keys"], strict=True)):
            shape, dtype, timpl = _leaf_spec(tmpl)
            want = tuple(lead) + shape
            if saved.shape != want or str(saved.dtype) != dtype or impl != timpl:
                raise self.corrupt(
                    f"leaf {i} of the saved {key!r} is {saved.dtype}{list(saved.shape)} "
                    f"(key {impl}); expected {dtype}{list(want)} (key {timpl})"
                )
            arr = jnp.asarray(saved)
            rebuilt.append(jax.random.wrap_key_data(arr, impl=timpl) if timpl else arr)
        return jax.tree.unflatten(treedef, rebuilt)

    def _attrs(self, idata: Result, status: str, done: int) -> Result:
        idata.attrs["probdyn_checkpoint"] = status
        idata.attrs["probdyn_fingerprint"] = json.dumps(self.fp, sort_keys=True)
        idata.attrs["probdyn_draws_done"] = int(done)
        return idata

    def save_progress(self, payload: dict, partial: Result | None, done: int) -> None:
        """Write the state file, then the partial netCDF, each atomically."""
        members = _encode(payload, self.fp)

        def write_state(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **members)

        _atomic_write(self.state_path, write_state)
        if partial is not None:
            self._attrs(partial, "partial", done)
            _atomic_write(self.path, lambda tmp: _az.to_netcdf(partial, tmp))

    def save_complete(self, idata: Result, done: int) -> None:
        """Write the final result to ``path`` and remove the state file."""
        out = _az.make_result(
            {g: _az.get_group(idata, g) for g in _az.group_names(idata)}, idata.attrs
        )
        self._attrs(out, "complete", done)
        _atomic_write(self.path, lambda tmp: _az.to_netcdf(out, tmp))
        if self.state_path.exists():
            os.remove(self.state_path)
