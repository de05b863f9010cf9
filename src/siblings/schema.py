"""The result tables as typed, documented declarations: every column's Arrow type, unit and
meaning, declared next to the code that builds its rows.

A declaration does three jobs. It refuses, at write time, a frame that does not fit it (a
column missing, undeclared or holding values of another type), naming the column, so a
change that drops or mistypes a column fails in the aggregate job instead of in a reader
weeks later. It stores the unit and meaning in each Parquet field's metadata and the table's
``schema_version`` on every row, so a file explains itself. And it renders
``docs/results.md`` (``python -m siblings.results_doc``), so the documentation cannot drift
from what is written. A table's version goes up whenever a column is added, removed,
renamed, or changes type, unit or meaning.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from siblings.artifacts import write_parquet

VERSION_COLUMN = "schema_version"


class SchemaError(ValueError):
    """A frame that does not fit its table's declaration; the message names the columns."""


def _is_null(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating))
                                               and bool(np.isnan(value)))


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


def _is_whole(value: object) -> bool:
    """An integer, or a float without a fraction: pandas stores an integer column with
    missing values as floats with NaN."""
    return _is_number(value) and float(value).is_integer()


# What a non-null value of each supported Arrow type must be; lists check their elements.
VALUE_CHECKS: dict[pa.DataType, Callable[[object], bool]] = {
    pa.string(): lambda v: isinstance(v, str),
    pa.float64(): _is_number,
    pa.int64(): _is_whole,
    pa.bool_(): lambda v: isinstance(v, (bool, np.bool_)),
}


def value_check(type_: pa.DataType) -> Callable[[object], bool]:
    """Whether a non-null value fits ``type_``: a scalar type of :data:`VALUE_CHECKS`, or a
    list of one (a list, tuple or array whose non-null elements fit)."""
    if pa.types.is_list(type_):
        item = value_check(type_.value_type)
        return lambda v: (isinstance(v, (list, tuple, np.ndarray))
                          and all(_is_null(x) or item(x) for x in v))
    if type_ not in VALUE_CHECKS:
        raise ValueError(f"no value check for Arrow type {type_}; supported: "
                         f"{', '.join(map(str, VALUE_CHECKS))} and lists of them")
    return VALUE_CHECKS[type_]


def type_name(type_: pa.DataType) -> str:
    """The type as the documentation shows it: Arrow's name, lists as ``list<item type>``."""
    return f"list<{type_name(type_.value_type)}>" if pa.types.is_list(type_) else str(type_)


@dataclass(frozen=True)
class Column:
    """One column: its Arrow type, the unit its values are in and what they mean."""

    name: str
    type: pa.DataType
    unit: str
    meaning: str

    def __post_init__(self) -> None:
        value_check(self.type)  # an unsupported type fails where it is declared

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, metadata={b"unit": self.unit.encode(),
                                                        b"description": self.meaning.encode()})

    def misfit(self, values: pd.Series) -> str | None:
        """The first non-null value that does not fit the type, in words; None if all fit."""
        fits = value_check(self.type)
        for row, value in enumerate(values):
            if not (_is_null(value) or fits(value)):
                shown = value.item() if isinstance(value, np.generic) else value
                return (f"column '{self.name}' should hold {type_name(self.type)}, but row "
                        f"{row} holds {reprlib.repr(shown)} ({type(value).__name__})")
        return None


@dataclass(frozen=True)
class TableSchema:
    """One result table (``<name>.parquet``): what it holds and its columns, in file order;
    every file also carries :data:`VERSION_COLUMN`."""

    name: str
    version: int
    description: str
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice or VERSION_COLUMN in names:
            raise ValueError(f"{self.name}: columns declared twice {twice}, or one named "
                             f"{VERSION_COLUMN!r}, which every table adds itself")

    @property
    def file(self) -> str:
        return f"{self.name}.parquet"

    @property
    def written_columns(self) -> tuple[Column, ...]:
        """The declared columns and the version column, as the file holds them."""
        return (*self.columns, Column(
            VERSION_COLUMN, pa.int64(), "version number",
            f"the layout of this table the row was written with ({self.version} for the "
            "layout documented here); it goes up whenever a column is added, removed, "
            "renamed or changes type, unit or meaning"))

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def arrow(self) -> pa.Schema:
        """The Arrow schema: fields carry their unit and description, the schema names the
        table, its version and what it holds."""
        return pa.schema([c.field() for c in self.written_columns], metadata={
            b"table": self.name.encode(), b"schema_version": str(self.version).encode(),
            b"description": self.description.encode()})

    def validate(self, df: pd.DataFrame) -> None:
        """SchemaError naming every missing, undeclared or mistyped column. Undeclared
        columns are refused, not dropped: a new column is declared before it is written."""
        declared = {c.name for c in self.columns}
        missing = [c.name for c in self.columns if c.name not in df.columns]
        undeclared = [c for c in df.columns if c not in declared]
        problems = []
        if missing:
            problems.append(f"missing columns {missing}")
        if undeclared:
            problems.append(f"undeclared columns {undeclared} (declare them and raise the "
                            "version, or leave them out)")
        for column in self.columns:
            misfit = column.misfit(df[column.name]) if column.name in df.columns else None
            if misfit:
                problems.append(misfit)
        if problems:
            raise SchemaError(f"{self.file} (schema_version {self.version}) refused: "
                              + "; ".join(problems))

    def write(self, df: pd.DataFrame, out: str | Path) -> None:
        """Validates ``df``, stamps every row with the version and writes it, typed by
        :attr:`arrow`, with page checksums."""
        self.validate(df)
        rows = df.assign(**{VERSION_COLUMN: self.version})[[c.name for c in self.written_columns]]
        write_parquet(pa.Table.from_pandas(rows, schema=self.arrow, preserve_index=False), out)
