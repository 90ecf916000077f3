"""Run folders: JSON encoding of results and atomic file writes.

A run folder is built in a temporary sibling and renamed into place at the end,
so an interrupted or failed run never leaves a half-written folder behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, dataclasses and paths into JSON types.

    Non-finite floats become ``None`` (JSON has no NaN); callers that must not
    produce them check before writing.
    """
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any, indent: int | None = 2) -> str:
    """JSON text of ``obj`` via :func:`to_jsonable` (strict: no NaN tokens)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


@contextmanager
def _atomic_target(path: str | os.PathLike, suffix: str) -> Iterator[str]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with _atomic_target(path, ".tmp") as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (see :func:`dumps`) atomically."""
    return write_text_atomic(path, dumps(obj) + "\n")


def write_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write arrays to a compressed ``.npz`` atomically."""
    # The temporary name ends in .npz so numpy does not append another suffix.
    with _atomic_target(path, ".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


@contextmanager
def staged_run_folder(out: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` only if the block succeeds.

    Args:
        out: the final run folder.
        overwrite: replace an existing ``out``; if False an existing folder is an error.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    if out.exists() and not overwrite:
        raise ValueError(f"--out {str(out)!r} exists; pass overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging."))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old."))
        os.replace(out, trash / out.name)
        os.replace(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(stage, out)


def write_run_folder(out: str | os.PathLike, *, title: str, results: dict, arrays: dict[str, Any],
                     document: Callable[[Any], None], figures: Callable[[Callable[..., None]], None],
                     extra: Callable[[Path], None] | None = None) -> list[str]:
    """Write one experiment's run folder, staged and renamed into place at the end.

    The folder holds ``results.json``, ``arrays.npz``, ``figures/`` (PNG and PDF),
    ``report.md`` and ``report.html``.

    Args:
        out: the run folder (replaced if it exists).
        title: the report's title.
        results: the JSON-able results (written through :func:`to_jsonable`).
        arrays: named arrays for ``arrays.npz``.
        document: called with the report's :class:`~diffcrit.validation.document.Document`
            to add its text.
        figures: called with ``save(ax, name, caption)``, which writes a figure and
            adds it to the report.
        extra: called with the staging folder to write any further files.

    Returns:
        The folder's files, relative to it and sorted.
    """
    from diffcrit.validation.document import Document
    from diffcrit.validation.plots import save_figure

    report = Document(title=title)
    with staged_run_folder(out) as stage:
        def save(ax: Any, name: str, caption: str) -> None:
            save_figure(ax, stage / "figures" / name)
            report.figure(f"figures/{name}.png", caption)

        document(report)
        figures(save)
        write_json_atomic(stage / "results.json", results)
        write_npz_atomic(stage / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        write_text_atomic(stage / "report.md", report.to_markdown())
        write_text_atomic(stage / "report.html", report.to_html())
        if extra is not None:
            extra(stage)
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    return files
