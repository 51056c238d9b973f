"""ModelConfig: variants, JSON round trip, and clear errors for bad fields."""

from __future__ import annotations

import json

import pytest

from models.config import VARIANTS, ConfigError, ModelConfig


@pytest.mark.parametrize("variant", VARIANTS)
def test_json_round_trip(variant: str) -> None:
    cfg = ModelConfig.for_variant(variant, item_buckets=1000, mlp_dims=(32, 8), extra={"dataset": "x"})
    again = ModelConfig.from_json(json.dumps(json.loads(cfg.to_json())))
    assert again == cfg and again.variant == variant


def test_variant_defaults() -> None:
    sim_can = ModelConfig.for_variant("sim_can")
    assert (sim_can.gsu, sim_can.coaction, sim_can.short_len, sim_can.long_k) == ("hybrid", True, 50, 64)
    assert sim_can.stats and sim_can.vocabulary and sim_can.n_stats == 26
    assert sim_can.can_param_size == 160 and sim_can.can_out_dim == 2 * 3 * 12
    assert ModelConfig.for_variant("sim_can", gsu="soft").gsu == "soft"
    assert ModelConfig.for_variant("dnn").short_arch == "mean"
    din = ModelConfig.for_variant("din")
    assert not (din.stats or din.vocabulary) and din.n_stats == 0  # the short-history reference
    assert ModelConfig.for_variant("din_long").full_attention


def test_soft_search_needs_the_item_tables() -> None:
    with pytest.raises(ConfigError, match="vocabulary=True"):
        ModelConfig.for_variant("sim_soft", vocabulary=False)


def test_unknown_variant_lists_the_variants() -> None:
    with pytest.raises(ConfigError, match=r"variant='sim' is unknown.*dnn, din, din_long, sim_hard, sim_soft"):
        ModelConfig.for_variant("sim")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("item_buckets", 1, "item_buckets=1 must be an integer >= 2"), ("gsu", "fuzzy", "gsu='fuzzy'"),
     ("dropout", 1.5, "dropout=1.5"), ("can_dims", (12, 8, 4), "can_dims\\[0\\]=12 must equal item_dim=16"),
     ("nprobe", 999, "nprobe=999 must be <= n_clusters"), ("attention_norm", "max", "attention_norm='max'")],
)  # fmt: skip
def test_bad_fields_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig.for_variant("sim_can", **{field: value})


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown ModelConfig field"):
        ModelConfig.for_variant("din", learning_rate=0.1)
    data = ModelConfig.for_variant("din").to_dict()
    data["optimizer"] = "adam"
    with pytest.raises(ConfigError, match="optimizer"):
        ModelConfig.from_dict(data)
