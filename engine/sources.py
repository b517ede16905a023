"""Where rows come from: a JSONL, JSON, CSV or Parquet file or a hub dataset opened (or streamed) through `datasets`,
its format told from its columns, and the progress of `datasets`' own work reported to a callback.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..store.errors import first_line
from .config import DEMO, DEMO_CHAT, FORMATS
from .errors import DataError

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
DEFAULT_FIELDS = ("prompt", "answer")
TOKENIZER_FILES = (
    "tokenizer",
    "special_tokens_map",
    "added_tokens",
    "vocab",
    "merges",
    "chat_template",
    "spiece",
    "sentencepiece",
)
# progress(phase, done, total): `total` is None where the number of rows is not known ahead.
Progress = Callable[[str, int, "int | None"], None]


def open_rows(source: str, *, streaming: bool = False, cache_dir: str | None = None) -> Any:
    """The train split of a file or hub dataset: a memory-mapped `Dataset`, or an `IterableDataset` when streaming."""
    import datasets

    datasets.logging.set_verbosity_error()
    path = Path(source)
    builder = check_source(source)
    try:
        if builder is not None:
            if builder != "parquet" and not _has_rows(path, skip=1 if builder == "csv" else 0):
                raise DataError(f"{source}: the dataset is empty")
            rows = datasets.load_dataset(
                builder, data_files=str(path), split="train", streaming=streaming, cache_dir=cache_dir
            )
        else:
            rows = datasets.load_dataset(source, split="train", streaming=streaming, cache_dir=cache_dir)
    except DataError:
        raise
    except Exception as err:  # datasets raises many kinds; all mean "cannot read this source"
        raise DataError(f"{source}: cannot load the dataset: {first_line(err)}") from err
    if not streaming and len(rows) == 0:
        raise DataError(f"{source}: the dataset is empty")
    return rows


def check_source(source: str) -> str | None:
    """What can be told of a dataset without reading it: a named file that is not there, a file of a kind that
    cannot be read. Returns the `datasets` builder of a file, None for a hub dataset's name."""
    path = Path(source)
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is not None and not path.is_file():
        raise DataError(f"{source}: dataset file not found")
    if builder is None and path.exists():
        raise DataError(f"{source}: unsupported dataset file; use .jsonl, .json, .csv or .parquet")
    return builder


def check_sources(config: Any) -> None:
    """The config's dataset, validation file, probes file and model folder, checked before anything is recorded or loaded."""
    for source in (config.dataset, config.validation):
        if source is not None and source not in (DEMO, DEMO_CHAT):
            check_source(source)
    if getattr(config, "probes", None) is not None:
        check_probes_file(config.probes)
    model = str(config.model)
    local = model not in (DEMO, DEMO_CHAT) and model.startswith(("/", "./", "../", "~"))
    if local and not Path(model).expanduser().is_dir():
        raise DataError(f"model: cannot load '{model}': no such folder")


def check_probes_file(path: str) -> None:
    """A probes file is a file of rows (never a hub name): refuse one that is missing or of another kind."""
    if Path(path).suffix.lower() not in FILE_BUILDERS or not Path(path).is_file():
        kind = "not found" if not Path(path).exists() else "not a .jsonl, .json, .csv or .parquet file"
        raise DataError(f"{path}: probes file {kind}")


def _has_rows(path: Path, skip: int) -> bool:
    """Whether a text file holds a non-blank line past its first `skip` (a CSV header)."""
    with path.open("rb") as handle:
        lines = (line for line in handle if line.strip())
        return sum(1 for _, _ in zip(range(skip + 1), lines)) > skip


def identity(source: str, rows: Any) -> str:
    """What names this data for the cache: a file's path, size and modification time; a hub dataset's fingerprint."""
    path = Path(source)
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"{source}:{getattr(rows, '_fingerprint', '')}"


def tokenizer_digest(tokenizer: Any) -> str:
    """A digest of the tokenizer's files (or, for one not loaded from a folder, of its serialized form)."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    folder = Path(str(getattr(tokenizer, "name_or_path", "")))
    files = sorted(p for p in folder.glob("*") if p.is_file() and p.name.startswith(TOKENIZER_FILES))
    if files:
        for file in files:
            digest.update(file.name.encode() + file.read_bytes())
    elif getattr(tokenizer, "backend_tokenizer", None) is not None:
        digest.update(tokenizer.backend_tokenizer.to_str().encode())
    else:
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(repr((tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.all_special_ids)).encode())
    return digest.hexdigest()


def detect_format(columns: list[str], config: Any, source: str) -> tuple[str, tuple[str, ...]]:
    """The format and the columns it reads: set by `data_format`, else told from the columns present.

    Custom `prompt_field`/`answer_field` names mean twotier's prompt/answer rows, as configs always did."""
    fields = (config.prompt_field, config.answer_field)
    kind = getattr(config, "data_format", None)
    if kind is None:
        has = set(columns)
        if fields != DEFAULT_FIELDS:
            kind = "prompt_answer"
        elif "input_ids" in has:
            kind = "tokenized"
        elif "messages" in has:
            kind = "messages"
        elif {"prompt", "completion"} <= has:
            kind = "prompt_completion"
        elif set(fields) <= has or "text" not in has:
            kind = "prompt_answer"
        else:
            kind = "text"
    if kind not in FORMATS:
        raise DataError(f"data_format: '{kind}' is not one of {', '.join(FORMATS)}")
    wanted = {
        "prompt_answer": fields,
        "prompt_completion": ("prompt", "completion"),
        "messages": ("messages",),
        "text": ("text",),
        "tokenized": ("input_ids",),
    }[kind]
    for name in wanted:
        if name not in columns:
            key = {fields[0]: " (set 'prompt_field')", fields[1]: " (set 'answer_field')"}.get(name, "")
            hint = (
                ""
                if kind != "prompt_answer" or getattr(config, "data_format", None)
                else ("; or give 'messages', 'prompt'/'completion', 'text' or 'input_ids' rows")
            )
            raise DataError(f"{source}: no '{name}' field{key}; the rows have: {', '.join(columns)}{hint}")
    if kind == "tokenized":
        wanted += tuple(name for name in ("labels", "completion_mask") if name in columns)[:1]
    return kind, wanted


def check_text_columns(rows: Any, names: tuple[str, ...], source: str) -> None:
    """Refuse a column `datasets` typed as other than text, naming its first row with a value."""
    import pyarrow.compute as pc

    features = getattr(rows, "features", None) or {}
    for name in names:
        feature = features.get(name)
        dtype = getattr(feature, "dtype", None)
        if feature is None or dtype in ("string", "large_string"):
            continue
        if dtype == "null":
            raise DataError(f"{source}: row 1 has no '{name}'")
        column = rows.data.column(name)
        first = pc.index(pc.is_valid(column), True).as_py()
        kind = type(column[first].as_py()).__name__ if first >= 0 else str(dtype or type(feature).__name__)
        raise DataError(f"{source}: row {max(first, 0) + 1}: '{name}' must be text, got {kind}")


@contextlib.contextmanager
def reporting(progress: Progress | None, phase: str) -> Iterator[None]:
    """Send the counts of `datasets`' progress bars (loading a file, `map`) to `progress` while the block runs.

    `datasets` draws its bars through the tqdm class named `hf_tqdm` in the modules that load and map; for the
    block that name is a subclass that also reports each update. Map workers report to the main process, so
    counts arrive with several processes too. The bars are still drawn wherever `datasets` draws them."""
    if progress is None:
        yield
        return
    import datasets.arrow_dataset
    import datasets.builder
    from datasets.utils import tqdm as bar_class

    report: Progress = progress

    class Reporting(bar_class):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._done, self._total = kwargs.get("initial") or 0, kwargs.get("total")
            report(phase, self._done, self._total)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            report(phase, self._done, self._total)
            return super().update(n)

    modules = [module for module in (datasets.arrow_dataset, datasets.builder) if hasattr(module, "hf_tqdm")]
    saved = [module.hf_tqdm for module in modules]
    for module in modules:
        module.hf_tqdm = Reporting
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.hf_tqdm = original
