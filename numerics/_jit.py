"""The one place that sets Numba compilation flags.

Kernels are compiled with ``cache=True`` (module-level functions only) so a second
process starts fast. ``fastmath`` is opt-in and only for kernels that are NaN-safe
by construction (no comparisons against NaN, no reliance on inf arithmetic).
``parallel`` kernels are dispatched only above :data:`PARALLEL_MIN_WORK` so small
calls do not pay the thread-pool start-up.
"""

from __future__ import annotations

import numba

#: Work units (e.g. pixel-patch pairs) below which a serial kernel is used.
PARALLEL_MIN_WORK = 200_000


def njit(*, parallel: bool = False, fastmath: bool = False):
    """Decorator for a module-level Numba kernel with the project's flags."""
    return numba.njit(cache=True, nogil=True, parallel=parallel, fastmath=fastmath)
