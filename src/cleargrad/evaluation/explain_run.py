"""The loop behind ``cleargrad explain``: explain every image with every method, write the
maps (PNG figure + ``.npy``) and the manifest that says what each file shows."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_save_npy, atomic_write
from ..core.targets import select_output
from .console import UI
from .engine import seed_for
from .explainers import Explainer
from .images import ImageSet
from .outputs import ManifestRow, output_stems, write_manifest
from .targets import target_rule, targets_for

__all__ = ["class_names_from", "explain_images", "read_class_names"]


def read_class_names(path: Path) -> list[str]:
    """Class names, one per line (index = line number from 0; blank lines are names too,
    except trailing ones)."""
    from ..errors import DataError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read class names from {path}: {e}") from e
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path} holds no class names (one per line expected)")
    return [line.strip() for line in lines]


def class_names_from(images: ImageSet) -> list[str] | None:
    """Class names of a folder with class sub-folders (sorted sub-folder names), else None."""
    named = {r.label: r.class_name for r in images.records if r.label is not None and r.class_name is not None}
    if not named:
        return None
    return [named.get(i, "") for i in range(max(named) + 1)]


def _name(names: Sequence[str] | None, index: int | None) -> str:
    if names is None or index is None or not 0 <= index < len(names):
        return ""
    return names[index]


def explain_images(
    model: nn.Module,
    images: ImageSet,
    explainers: list[Explainer],
    out: Path,
    *,
    target: str | int = "auto",
    batch_size: int = 16,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    plain: bool = False,
    run: dict[str, Any] | None = None,
    ui: UI,
) -> list[ManifestRow]:
    """Explain every readable image with every explainer; write under ``out``:

    - ``<stem>__<method>.png``: the input, the map with a colour bar and a caption
      (method, class, probability), or with ``plain`` the bare overlay;
    - ``<stem>__<method>.npy``: the raw explanation (the method's output for that image);
    - ``manifest.csv`` / ``manifest.json``: one row per pair (see
      :class:`~cleargrad.evaluation.outputs.ManifestRow`); the JSON also holds ``run``.

    Stems are :func:`~cleargrad.evaluation.outputs.output_stems` of the image ids. Returns the rows.

    Every file is written atomically. Before the first file is written the manifest is
    replaced by an empty one marked ``"complete": false``, and after every batch it is
    rewritten with the rows finished so far, so that a manifest never describes a file
    that this run has overwritten since (a killed rerun into a used folder); the last
    write has ``"complete": true``. (On long runs the progress rewrites are spaced so that
    they take about 5 % of the time: files of the last batches may have no row yet.)
    """
    from .render import overlay_png

    assert images.preprocess is not None
    prep = images.preprocess
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    stems = output_stems([r.image_id for r in images.records])
    n = len(images)
    rows: list[ManifestRow] = []
    write_manifest(out, rows, run or {}, complete=False)  # the old manifest must not outlive what it lists
    next_write, cost = time.monotonic(), 0.0
    with ui.progress() as progress:
        task = progress.add_task("explaining", total=n * len(explainers))
        for b, start in enumerate(range(0, n, batch_size)):
            count = min(batch_size, n - start)
            x, recs = images.load(list(range(start, start + count)))
            if x is None:
                progress.advance(task, len(explainers) * count)
                continue
            x = x.to(device)
            with torch.no_grad():
                logits = select_output(model(x))
            probs = torch.softmax(logits.float(), dim=1).cpu()
            pred = logits.argmax(1).cpu().tolist()
            for e in explainers:
                t = targets_for(e, target, logits, [r.label for r in recs])
                gen = torch.Generator(device=x.device).manual_seed(seed_for(seed, b, e.name))
                a = e.fn(x, t, gen).detach().cpu()
                options = json.dumps(e.options, sort_keys=True, default=str)
                for i, r in enumerate(recs):
                    k = int(t[i])
                    p = float(probs[i, k])
                    stem = f"{stems[r.image_id]}__{e.name}"
                    png_path, npy_path = out / f"{stem}.png", out / f"{stem}.npy"
                    png_path.parent.mkdir(parents=True, exist_ok=True)
                    image = prep.denormalize(x[i].cpu())
                    if plain:
                        png = overlay_png(image, a[i])
                    else:
                        png = _figure(image, a[i], e, k, _name(class_names, k), p, target_rule(e, target), r.source)
                    atomic_save_npy(npy_path, a[i].numpy())
                    atomic_write(png_path, png)
                    rows.append(
                        ManifestRow(
                            input=r.source, image_id=r.image_id, label=r.label, label_name=r.class_name or "",
                            class_index=k, class_name=_name(class_names, k), probability=p,
                            predicted=int(pred[i]), predicted_name=_name(class_names, int(pred[i])),
                            target_rule=target_rule(e, target), method=e.name, options=options,
                            overlay=png_path.relative_to(out).as_posix(), array=npy_path.relative_to(out).as_posix(),
                        )
                    )
                progress.advance(task, count)
            if time.monotonic() >= next_write:  # a progress manifest; its cost bounded to ~5 % of the run
                t0 = time.monotonic()
                write_manifest(out, rows, run or {}, complete=False)
                cost = time.monotonic() - t0
                next_write = time.monotonic() + 20 * cost
    write_manifest(out, rows, run or {})
    return rows


def _figure(
    image: torch.Tensor, attribution: torch.Tensor, e: Explainer, k: int, name: str, p: float, rule: str, source: str
) -> bytes:
    from ..core import to_2d
    from ..viz import explanation_png

    heat = to_2d(attribution.float().unsqueeze(0))[0, 0]
    cls = f"class {k}" + (f" {name!r}" if name else "")
    caption = f"{e.name} · {cls} · p = {p:.3f} · target: {rule}\n{Path(source).name}"
    unit = "fused importance (GAD, in [0, 1])" if e.family == "gad" else "importance"
    return explanation_png(image, heat, caption, colorbar_label=unit)
