"""Benchmarks behind `longrank bench NAME`: each module has ``add_arguments(parser)`` and ``measure(args) -> dict``
with the fields of DESIGN §6. References run side by side in the same process; ratios beside absolute medians."""
