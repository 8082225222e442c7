"""The compressed form of settled readings: one (device, metric, UTC month) series as bytes.

A unit holds the readings of every settled day of one month of one device and metric, and the
exact hourly rollups of those readings. It is pure computation (numpy + pcodec), no SQL: the
store writes and reads the bytes (`store/cold.py`).

Why the rollups travel inside the unit, and how they cost almost nothing: an hour's `count`,
`min` and `max` follow from its readings, but its `sum` does not — the hot path adds each
batch's partial sum to the stored one (`store/measurements.py`), so the stored double depends on
how the readings were batched. Every answer must stay identical bit for bit after compression,
so the unit keeps, per hour, the difference between the stored double and the one recomputed
here (left to right in time order), as the difference of their IEEE bit patterns. Nearly every
hour was pushed in order, so nearly every difference is 0, and pcodec stores an array of zeros
in a few dozen bytes. `min` and `max` get the same treatment (they differ only for -0.0 against
0.0), so a unit never depends on how PostgreSQL orders signed zeros.

Layout: a version byte, then five pcodec blobs, each after its uint32 length: times (int64
microseconds since the Unix epoch, ascending, unique), values (float64), and the sum, min and
max corrections (int64, one per hour that has readings, in hour order).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pcodec import ChunkConfig, standalone

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

_VERSION = 1
_HEADER = struct.Struct("<B5I")
_CONFIG = ChunkConfig()

Int64s = npt.NDArray[np.int64]
Float64s = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


class InconsistentRollups(ValueError):
    """The stored rollups do not describe the readings (hours or counts differ); not compressible."""


@dataclass(frozen=True)
class Hours:
    """Hourly aggregates, one entry per hour that has readings, ascending by `starts`.

    `starts` are microseconds since the Unix epoch of each UTC hour's first instant.
    """

    starts: Int64s
    counts: Int64s
    sums: Float64s
    mins: Float64s
    maxs: Float64s

    def __len__(self) -> int:
        return len(self.starts)

    @staticmethod
    def empty() -> Hours:
        ints = np.zeros(0, dtype=np.int64)
        floats = np.zeros(0, dtype=np.float64)
        return Hours(ints, ints, floats, floats, floats)


@dataclass(frozen=True)
class Unit:
    """A decoded unit: its readings (ascending, unique times) and their exact hourly rollups."""

    times: Int64s
    values: Float64s
    hours: Hours

    def __len__(self) -> int:
        return len(self.times)


def hour_starts(times: Int64s) -> Int64s:
    """The UTC hour each time falls in (floor, also for times before 1970)."""
    return np.floor_divide(times, HOUR_US) * HOUR_US


def derived_hours(times: Int64s, values: Float64s) -> Hours:
    """The rollups that follow from readings alone: sums added left to right in time order.

    `times` must be ascending. The sums are plain IEEE additions in a fixed order (vectorised
    across hours, sequential within one), so the same readings give the same bits on every
    machine and numpy version — unlike `np.add.reduceat`, whose summation order numpy may change.
    """
    if not len(times):
        return Hours.empty()
    starts_of = hour_starts(times)
    first = np.flatnonzero(np.r_[True, starts_of[1:] != starts_of[:-1]])
    counts = np.diff(np.r_[first, len(times)]).astype(np.int64)
    sums = values[first].copy()
    for k in range(1, int(counts.max())):
        more = counts > k
        sums[more] += values[first[more] + k]
    mins = np.minimum.reduceat(values, first)
    maxs = np.maximum.reduceat(values, first)
    return Hours(starts_of[first], counts, sums, mins, maxs)


def _bits(values: Float64s) -> Int64s:
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)


def _floats(bits: Int64s) -> Float64s:
    return np.ascontiguousarray(bits, dtype=np.int64).view(np.float64)


def _compress(array: npt.NDArray[np.int64] | npt.NDArray[np.float64]) -> bytes:
    if not len(array):
        return b""
    return bytes(standalone.simple_compress(np.ascontiguousarray(array), _CONFIG))


def _decompress_ints(blob: bytes) -> Int64s:
    if not blob:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(standalone.simple_decompress(blob), dtype=np.int64)


def _decompress_floats(blob: bytes) -> Float64s:
    if not blob:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(standalone.simple_decompress(blob), dtype=np.float64)


def encode(times: Int64s, values: Float64s, hours: Hours) -> bytes:
    """The unit's bytes for readings (ascending unique `times`) and the rollups to keep exactly.

    Raises `InconsistentRollups` when `hours` does not list exactly the hours of the readings
    with their counts: the rows and their rollups disagree, and compressing would change answers.
    """
    times = np.ascontiguousarray(times, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    if len(times) != len(values):
        raise ValueError("times and values differ in length")
    if len(times) > 1 and not bool(np.all(times[1:] > times[:-1])):
        raise ValueError("times must be ascending and unique")
    derived = derived_hours(times, values)
    if not (np.array_equal(derived.starts, hours.starts) and np.array_equal(derived.counts, hours.counts)):
        raise InconsistentRollups("the rollups' hours or counts differ from the readings'")
    blobs = [
        _compress(times),
        _compress(values),
        _compress(_bits(hours.sums) - _bits(derived.sums)),
        _compress(_bits(hours.mins) - _bits(derived.mins)),
        _compress(_bits(hours.maxs) - _bits(derived.maxs)),
    ]
    return _HEADER.pack(_VERSION, *(len(blob) for blob in blobs)) + b"".join(blobs)


def _blobs(payload: bytes) -> list[bytes]:
    version, *lengths = _HEADER.unpack_from(payload)
    if version != _VERSION:
        raise ValueError(f"unknown cold unit version {version}")
    blobs, offset = [], _HEADER.size
    for length in lengths:
        blobs.append(payload[offset : offset + length])
        offset += length
    return blobs


def decode_times(payload: bytes) -> Int64s:
    """Only the unit's reading times (what a duplicate check needs)."""
    return _decompress_ints(_blobs(payload)[0])


def decode_readings(payload: bytes) -> Unit:
    """The unit's readings alone (no hours: what pricing needs), without deriving the rollups."""
    times_blob, values_blob = _blobs(payload)[:2]
    return Unit(_decompress_ints(times_blob), _decompress_floats(values_blob), Hours.empty())


def decode(payload: bytes) -> Unit:
    """The unit's readings and their exact hourly rollups."""
    times_blob, values_blob, sums_blob, mins_blob, maxs_blob = _blobs(payload)
    times = _decompress_ints(times_blob)
    values = _decompress_floats(values_blob)
    derived = derived_hours(times, values)
    hours = Hours(
        derived.starts,
        derived.counts,
        _floats(_bits(derived.sums) + _decompress_ints(sums_blob)),
        _floats(_bits(derived.mins) + _decompress_ints(mins_blob)),
        _floats(_bits(derived.maxs) + _decompress_ints(maxs_blob)),
    )
    return Unit(times, values, hours)


def combine_hours(cold: Hours, hot: Hours) -> Hours:
    """A compressed unit's hours with hot rollups of the same series: the one merge rule.

    Where both hold an hour (a late reading for a compressed day) the hour is: counts added,
    the cold sum plus the hot sum (in that order), the smaller min, the larger max. Every query
    and the compression run that folds the late reading in use this function, so an answer is
    the same before and after the fold.
    """
    if not len(hot):
        return cold
    if not len(cold):
        return hot
    starts = np.union1d(cold.starts, hot.starts)
    ci = np.searchsorted(starts, cold.starts)
    hi = np.searchsorted(starts, hot.starts)
    counts = np.zeros(len(starts), dtype=np.int64)
    counts[ci] += cold.counts
    counts[hi] += hot.counts
    sums = np.zeros(len(starts), dtype=np.float64)
    sums[ci] = cold.sums
    only_hot = ~np.isin(starts, cold.starts)
    both = np.isin(starts, cold.starts) & np.isin(starts, hot.starts)
    hot_at = np.zeros(len(starts), dtype=np.float64)
    hot_at[hi] = hot.sums
    sums[only_hot] = hot_at[only_hot]
    sums[both] = sums[both] + hot_at[both]
    mins = np.full(len(starts), np.inf)
    maxs = np.full(len(starts), -np.inf)
    mins[ci] = cold.mins
    maxs[ci] = cold.maxs
    hot_min = np.full(len(starts), np.inf)
    hot_max = np.full(len(starts), -np.inf)
    hot_min[hi] = hot.mins
    hot_max[hi] = hot.maxs
    # Where one side lacks the hour, take the other side's value itself (keeps a -0.0 as it is).
    mins = np.where(only_hot, hot_min, np.where(both, np.minimum(mins, hot_min), mins))
    maxs = np.where(only_hot, hot_max, np.where(both, np.maximum(maxs, hot_max), maxs))
    return Hours(starts, counts, sums, mins, maxs)


def merge_readings(cold: Unit, times: Int64s, values: Float64s) -> tuple[Int64s, Float64s]:
    """A unit's readings with new ones (keys never overlap: first write wins kept them apart)."""
    all_times = np.concatenate([cold.times, np.asarray(times, dtype=np.int64)])
    all_values = np.concatenate([cold.values, np.asarray(values, dtype=np.float64)])
    order = np.argsort(all_times, kind="stable")
    all_times, all_values = all_times[order], all_values[order]
    if len(all_times) > 1 and not bool(np.all(all_times[1:] > all_times[:-1])):
        raise ValueError("a reading is both compressed and hot")
    return all_times, all_values
