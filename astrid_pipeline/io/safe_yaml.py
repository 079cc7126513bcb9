"""YAML input that cannot hang, exhaust memory or surprise: the one loader for every YAML file users give us.

- Aliases and anchors are refused (a "billion laughs" file expands exponentially through them), so the
  document's size is bounded by the file's size;
- the file size (``max_bytes``) and the nesting depth (``max_depth``) are capped;
- only ``true``/``false`` are booleans (YAML 1.2): a region named ``yes``, ``no``, ``on`` or ``off`` stays a
  string, as a person writing it means;
- numbers follow YAML 1.2's core schema too: ``1e9`` is a number (YAML 1.1 left it a string), while ``1:30``
  (a YAML 1.1 base-60 integer, 90) and ``1_000`` stay strings, and ``0o17``/``0x1F`` are octal/hexadecimal;
- a file that is not text (binary, wrong encoding) is a named error, and so is malformed YAML, and so is a
  mapping that gives the same key twice (PyYAML would keep the last value silently);
- :func:`short` quotes a value in a message at a bounded length.

Every failure is a :class:`~astrid_pipeline.errors.ConfigError` naming the file (or ``what``) and the reason.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import yaml

from astrid_pipeline.errors import ConfigError

MAX_BYTES = 8 << 20  # 8 MiB: far above any region catalog, parameter file or manifest
MAX_DEPTH = 32


def short(value, n: int = 80) -> str:
    """``repr(value)`` cut to ``n`` characters (values quoted in messages stay readable and bounded)."""
    try:
        text = repr(value) if not isinstance(value, str) else repr(value[: n + 1])
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[: n - 3] + "..."


def clip(text: str, n: int = 200) -> str:
    """``text`` itself (no quotes) cut to ``n`` characters, for lists of names joined into a message."""
    text = str(text)
    return text if len(text) <= n else text[: n - 3] + "..."


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with YAML 1.2 booleans and a depth limit."""

    max_depth = MAX_DEPTH

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"{self._where}: line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are "
                              "not accepted; write the value out")
        event = self.peek_event()
        if getattr(event, "anchor", None):
            raise ConfigError(f"{self._where}: line {event.start_mark.line + 1}: YAML anchors (&{event.anchor}) are "
                              "not accepted; write the value out")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > self.max_depth:
                raise ConfigError(f"{self._where}: line {event.start_mark.line + 1}: nested deeper than "
                                  f"{self.max_depth} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# YAML 1.2 booleans only (yes/no/on/off are strings)
_StrictLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
for _first in "tTfF":
    _StrictLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:bool", _BOOL))


def _bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _bool)

# YAML 1.2 core-schema numbers (no base 60, no underscores, 0o octal, exponents without a dot)
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|"
                    r"\.(?:nan|NaN|NAN))$")
for _tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
    _StrictLoader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != _tag] for k, v in _StrictLoader.yaml_implicit_resolvers.items()
    }
for _first in "-+0123456789":
    _StrictLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:int", _INT))
for _first in "-+0123456789.":
    _StrictLoader.yaml_implicit_resolvers.setdefault(_first, []).append(("tag:yaml.org,2002:float", _FLOAT))


#: most digits of an integer (Python refuses to convert more than 4300; no parameter needs more than a few)
MAX_INT_DIGITS = 100


def _int(loader, node):
    text = loader.construct_scalar(node)
    if len(text) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(None, None, f"an integer of {len(text)} digits is not accepted "
                                                f"(at most {MAX_INT_DIGITS})", node.start_mark)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _int)


def _mapping(loader, node):
    """A mapping whose keys are all different (YAML requires it; PyYAML silently keeps the last value)."""
    loader.flatten_mapping(node)
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # an unhashable key (a list): the constructor says so
            break
        if first is not key_node:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {short(key, 60)} (first on line {first.start_mark.line + 1}): "
                            "which value is meant?", key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _mapping)


def load_yaml_text(text: str, what: str = "<yaml>", max_depth: int = MAX_DEPTH):
    """Parse YAML text with the strict loader; ``what`` names the source in errors."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{what}: {len(text)} characters of YAML; at most {MAX_BYTES} are accepted")
    loader = _StrictLoader(text)
    loader._where = what
    loader.max_depth = max_depth
    try:
        return loader.get_single_data()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{what}: not valid YAML{where}: {str(problem)[:200]}") from None
    except RecursionError:
        raise ConfigError(f"{what}: nested too deeply to read") from None
    finally:
        loader.dispose()


def load_yaml(path: str | os.PathLike, what: str | None = None, *, max_bytes: int = MAX_BYTES,
              max_depth: int = MAX_DEPTH):
    """Read and parse a YAML file safely (see the module docs); errors name the file."""
    p = Path(path)
    label = f"{what} {p}" if what else str(p)
    return load_yaml_text(read_text_file(p, label, max_bytes=max_bytes, kind="YAML"), label, max_depth=max_depth)


def read_text_file(path: str | os.PathLike, label: str | None = None, *, max_bytes: int = MAX_BYTES,
                   kind: str = "text") -> str:
    """The UTF-8 text of a small configuration file (YAML, CSV), with every failure a named error.

    Missing, a folder, a pipe or device, unreadable, larger than ``max_bytes``, binary (a NUL byte) or not UTF-8: a
    :class:`ConfigError` naming ``label`` (default: the path). The size is checked before reading.
    """
    p = Path(path)
    label = label or str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{label}: file does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if p.is_dir():
        raise ConfigError(f"{label}: is a folder, not a {kind} file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever, a device never end
        raise ConfigError(f"{label}: is not a regular file (a pipe, socket or device), not a {kind} file")
    if st.st_size > max_bytes:
        raise ConfigError(f"{label}: {st.st_size} bytes; a {kind} file of at most {max_bytes} bytes is accepted")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # a file that grows (or a FIFO) cannot exceed the limit either
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{label}: more than {max_bytes} bytes; a {kind} file of at most {max_bytes} bytes "
                          "is accepted")
    if b"\x00" in raw[:8192]:
        raise ConfigError(f"{label}: is a binary file, not {kind} text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def file_fingerprint(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> str:
    """SHA-256 of a configuration file's bytes, for a sensor's cursor; ``''`` when the file is missing.

    It never blocks or fails: a file larger than ``max_bytes`` (which the loaders refuse anyway) is
    fingerprinted by its size and modification time without being read, and so are a folder, a pipe
    (reading one would block forever) or a device; an unreadable file by its errno. A sensor thus sees
    when the file changes without parsing (or reading) a bad one again.
    """
    import hashlib

    p = Path(path)
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            kind = "large" if stat.S_ISREG(st.st_mode) else f"special-{stat.S_IFMT(st.st_mode):o}"
            return f"{kind}:{st.st_size}:{st.st_mtime_ns}"
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"unreadable:{exc.errno}"
