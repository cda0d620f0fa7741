"""The load generator (``python -m benchmarks.load``, ``podium bench``): see ``cli``."""

import functools

from benchmarks import common

log_line = functools.partial(common.log_line, "load")
