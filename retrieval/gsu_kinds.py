"""Which search found a retrieved behaviour (``Retrieved.kind``): the ESU sees it, the explainer shows it."""

KIND_ITEM = 0  # one of the target item's own behaviours (an exact re-engagement)
KIND_SOFT = 1  # the soft search: an item close to the target in the item-vector space
KIND_CATEGORY = 2  # the hard search: a recent behaviour of the target's category
N_KINDS = 3
KIND_NAMES = ("item", "soft", "category")
N_TAGS = 1 + 2 * N_KINDS  # an ESU slot's tag: 0 padding, else 1 + 2·kind + [the behaviour is the target item]
