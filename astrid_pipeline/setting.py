"""How a setting is declared, once, on the science side: a dataclass field with its default and description.

``astrid_pipeline.defs._config.config_class`` turns such dataclasses into Dagster ``Config`` classes and
reads the description from the field's metadata.
"""

from __future__ import annotations

from dataclasses import field


def setting(default, description: str, **kw):
    """A dataclass field with ``default`` and ``metadata={"description": description}`` (``kw``: more of
    :func:`dataclasses.field`'s arguments)."""
    return field(default=default, metadata={"description": description}, **kw)
