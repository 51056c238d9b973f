"""One module per CLI verb; each exposes ``add_arguments(parser)`` and ``run(args) -> int``."""
