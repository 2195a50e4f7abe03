"""A run's ``config.json`` as a typed document: :class:`RunConfig`.

``config.json`` has five sections, each a :class:`RunConfig` field::

    model       ModelConfig     the registry name (or the model's name), its builder
                                arguments and its parameter count
    data        DataConfig      the data described by the caller (the CLI: root, category,
                                image_size, color_mode, split) and the counts train saw
    corruption  dict | None     the serialized corruption (None: none applied)
    training    TrainingConfig  train's arguments, with the task and the tiling
    runtime     RuntimeConfig   XLA, precision, strategy and versions

:meth:`RunConfig.from_dict` is the one reader: it checks the document, fills in what
older documents leave out (a run without ``training.task`` is a reconstruction run, one
without ``data.color_mode`` reads images of its model's channels, ...) and keeps keys it
does not know. :meth:`RunConfig.to_dict` writes the document back: the keys read, or for
a new run the keys ``train`` writes (``tile_size`` / ``tile_overlap`` only for a run on
tiles, ``task`` only for segmentation, ``data.split`` only when not ``"train"``), so that
the runs written before those keys existed still compare equal and resume.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from keras_skipae import io_utils

#: The colour modes a run's ``config.json`` may record, with their channel counts.
COLOR_MODES = io_utils.COLOR_MODES

#: The tasks a run may record (``training.task``; absent: ``"reconstruction"``).
TASKS = ("reconstruction", "segmentation")

#: Sections of ``config.json`` that must match for a run folder to be resumed.
COMPARED = ("model", "data", "corruption", "training")

_SECTIONS = ("model", "data", "corruption", "training", "runtime")


def _type_name(value) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _damaged(source: str, what: str, value, name: str) -> ValueError:
    return ValueError(f"The run config {source!r} is damaged: {what}. Received: {name}={value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class _Section:
    """Known keys as fields, unknown ones in ``extra``; ``written`` are the keys
    :meth:`to_dict` writes, in order (None: the keys a new run writes)."""

    extra: dict = field(default_factory=dict)
    written: tuple | None = field(default=None, compare=False, repr=False)

    _NAME: ClassVar[str] = ""

    @classmethod
    def _fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "written"))

    @classmethod
    def _read(cls, doc, source: str) -> dict:
        """``doc`` as the constructor's keywords (``extra`` and ``written`` included)."""
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ValueError(
                f"The run config {source!r} is damaged: {cls._NAME!r} must be a JSON object. "
                f"Received: a JSON {_type_name(doc)}"
            )
        names = cls._fields()
        values = {k: v for k, v in doc.items() if k in names and v is not None}
        extra = {k: v for k, v in doc.items() if k not in names}
        return dict(values, extra=extra, written=tuple(doc))

    @classmethod
    def from_dict(cls, doc, source: str = "config.json"):
        """The section of a ``config.json`` document (``source`` names it in errors)."""
        return cls(**cls._read(doc, source))

    def _new_keys(self) -> tuple[str, ...]:
        return self._fields()

    def to_dict(self) -> dict:
        """The section as ``config.json`` holds it."""
        keys = self.written if self.written is not None else self._new_keys() + tuple(self.extra)
        names = self._fields()
        return {k: getattr(self, k) if k in names else self.extra[k] for k in keys}


@dataclass(frozen=True, kw_only=True)
class ModelConfig(_Section):
    """``model``: the registry name (else the model's name), builder arguments, size."""

    name: str | None = None
    kwargs: dict = field(default_factory=dict)
    params: int | None = None

    _NAME: ClassVar[str] = "model"


@dataclass(frozen=True, kw_only=True)
class DataConfig(_Section):
    """``data``: what the caller described (``data_config``) and the counts ``train`` saw.

    ``image_size`` None with a ``root``: the images are read at full resolution (a run
    on tiles). ``color_mode`` None: the one of the model's channels
    (:meth:`RunConfig.color_mode`). ``split`` None: ``"train"``.
    """

    root: str | None = None
    category: str | None = None
    image_size: int | list | None = None
    color_mode: str | None = None
    split: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    pairs_given: bool = False

    _NAME: ClassVar[str] = "data"

    @classmethod
    def describe(cls, description: dict | None, **counts) -> DataConfig:
        """A new run's section: the caller's ``description`` (written as given, but
        ``split="train"``, the default, which is left out) and ``counts``
        (``n_train``, ``n_val``, ``pairs_given``)."""
        doc = io_utils.jsonable(dict(description or {}, **counts))
        if doc.get("split") == "train":
            del doc["split"]
        return cls(**cls._read(doc, "data_config"))

    @classmethod
    def from_dict(cls, doc, source: str = "config.json") -> DataConfig:
        values = cls._read(doc, source)
        mode = values.get("color_mode")
        if mode is not None and mode not in COLOR_MODES:
            raise _damaged(
                source, "data.color_mode must be 'grayscale' or 'rgb'", mode, "color_mode"
            )
        size = values.get("image_size")
        if size is not None and not (
            (_is_int(size) and size > 0)
            or (isinstance(size, list) and len(size) == 2 and all(_is_int(s) for s in size))
        ):
            raise _damaged(
                source,
                "data.image_size must be a positive integer, [height, width] or null",
                size,
                "image_size",
            )
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig(_Section):
    """``training``: :func:`keras_skipae.train`'s arguments, the task and the tiling."""

    epochs: int | None = None
    learning_rate: float | None = None
    loss: Any = None
    stain_weight: float | None = None
    batch_size: int | None = None
    validation_split: float | None = None
    steps_per_epoch: int | None = None
    seed: int = 0
    reduce_lr: Any = None
    schedule: str | None = None
    save_best: bool = False
    time_limit: float | None = None
    time_clock: str | None = None
    tile_size: int | None = None
    tile_overlap: int = 0
    task: str = "reconstruction"

    _NAME: ClassVar[str] = "training"

    def _new_keys(self) -> tuple[str, ...]:
        keys = tuple(k for k in self._fields() if k not in ("tile_size", "tile_overlap", "task"))
        if self.tile_size is not None:
            keys += ("tile_size", "tile_overlap")
        if self.task != "reconstruction":
            keys += ("task",)
        return keys

    @classmethod
    def from_dict(cls, doc, source: str = "config.json") -> TrainingConfig:
        values = cls._read(doc, source)
        task = values.get("task", "reconstruction")
        if task not in TASKS:
            raise _damaged(source, f"training.task must be one of {list(TASKS)}", task, "task")
        size, overlap = values.get("tile_size"), values.get("tile_overlap", 0)
        if size is not None and not (_is_int(size) and size > 0):
            raise _damaged(
                source, "training.tile_size must be a positive integer or null", size, "tile_size"
            )
        if not (_is_int(overlap) and 0 <= overlap < (size or overlap + 1)):
            raise _damaged(
                source,
                "training.tile_overlap must be an integer in [0, tile_size)",
                overlap,
                "tile_overlap",
            )
        split = values.get("validation_split")
        if split is not None and not (isinstance(split, int | float) and 0 <= split < 1):
            raise _damaged(
                source,
                "training.validation_split must be in [0, 1) or null",
                split,
                "validation_split",
            )
        if not _is_int(values.get("seed", 0)):
            raise _damaged(source, "training.seed must be an integer", values["seed"], "seed")
        return cls(**values)

    @property
    def tiling(self) -> tuple[int, int] | None:
        """``(tile_size, tile_overlap)`` of a run trained on tiles, else None."""
        return None if self.tile_size is None else (self.tile_size, self.tile_overlap)


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig(_Section):
    """``runtime``: how the run was computed (not compared when resuming)."""

    jit_compile: bool | None = None
    precision: str | None = None
    strategy: str | None = None
    replicas: int | None = None
    tensorflow: str | None = None
    keras: str | None = None
    deterministic: bool = False

    _NAME: ClassVar[str] = "runtime"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A run's ``config.json`` (see the module docstring).

    Example:
        >>> cfg = RunFolder("runs/wood_aesc").run_config()
        >>> cfg.data.category, cfg.task, cfg.tiling
        ('wood', 'reconstruction', None)
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    corruption: dict | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    extra: dict = field(default_factory=dict)
    source: str = field(default="config.json", compare=False)
    written: tuple | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, doc, source="config.json") -> RunConfig:
        """Reads a ``config.json`` document, of this version or an older one.

        Args:
            doc: the document (a dict).
            source: how errors name it (the file's path).

        Raises:
            ValueError: the document or a section is not a JSON object, or a value is
                out of its range (``data.color_mode``, ``data.image_size``,
                ``training.task``, ``training.tile_size`` / ``tile_overlap``,
                ``training.validation_split``, ``training.seed``); the message names
                ``source`` and the value.
        """
        source = str(source)
        if not isinstance(doc, dict):
            raise ValueError(
                f"The run config {source!r} must hold a JSON object ({{...}}); the file is "
                f"damaged. Received: a JSON {_type_name(doc)}"
            )
        corruption = doc.get("corruption")
        if corruption is not None and not isinstance(corruption, dict):
            raise ValueError(
                f"The run config {source!r} is damaged: 'corruption' must be a JSON object. "
                f"Received: a JSON {_type_name(corruption)}"
            )
        return cls(
            model=ModelConfig.from_dict(doc.get("model"), source),
            data=DataConfig.from_dict(doc.get("data"), source),
            corruption=corruption,
            training=TrainingConfig.from_dict(doc.get("training"), source),
            runtime=RuntimeConfig.from_dict(doc.get("runtime"), source),
            extra={k: v for k, v in doc.items() if k not in _SECTIONS},
            source=source,
            written=tuple(doc),
        )

    def to_dict(self) -> dict:
        """The ``config.json`` document (what :meth:`from_dict` read, for a read one)."""
        sections = {
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "corruption": self.corruption,
            "training": self.training.to_dict(),
            "runtime": self.runtime.to_dict(),
        }
        keys = self.written if self.written is not None else _SECTIONS + tuple(self.extra)
        return {k: sections[k] if k in sections else self.extra[k] for k in keys}

    def compared(self) -> dict:
        """The sections that must match for a run folder to be resumed."""
        doc = self.to_dict()
        return {k: doc.get(k) for k in COMPARED}

    # ------------------------------------------------------------ derived
    @property
    def task(self) -> str:
        """``"reconstruction"`` or ``"segmentation"``."""
        return self.training.task

    @property
    def tiling(self) -> tuple[int, int] | None:
        """``(tile_size, tile_overlap)`` of a run trained on tiles, else None."""
        return self.training.tiling

    def image_size(self, model=None):
        """The size the run's images are read at: None for a run on tiles (full
        resolution); else ``data.image_size``, else the ``model``'s input height."""
        if self.tiling is not None:
            return None
        if self.data.image_size is not None or model is None:
            return self.data.image_size
        return int(model.input_shape[1])

    def color_mode(self, channels: int) -> str:
        """How the run's images are read: ``data.color_mode``, else the one of ``channels``.

        Args:
            channels: the model's input channels (1 grayscale, 3 RGB).

        Raises:
            ValueError: the recorded colour mode has another channel count than the
                model's (the message names the config and the value).
        """
        mode = self.data.color_mode
        if mode is None:
            return io_utils.color_mode_for(channels)
        if COLOR_MODES[mode] != channels:
            raise ValueError(
                f"The run config {self.source!r} records color_mode={mode!r} "
                f"({COLOR_MODES[mode]} channel(s)), but the run's model takes {channels}. "
                f"Received: color_mode={mode!r}"
            )
        return mode
