"""Experiment configs compose the library's configs instead of copying them.

The Kleene experiments' keys come in groups (:class:`SeedKey`, :class:`KleeneTaskKeys`,
:class:`SemanticModelKeys`, :class:`TrainingKeys`) whose defaults are the library's
(:class:`qsem.models.ModelConfig`, :class:`qsem.tasks.kleene.KleeneTaskConfig`); a
config hands the library its parts as ``cfg.model`` and ``cfg.task``. The keys users
type are unchanged (flat: ``qsem run kleene lr=0.01 s_dim=3``).
"""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from qsem.experiments.kleene import (
    KleeneConfig,
    KleeneTaskKeys,
    LabelFractionKey,
    SemanticModelKeys,
    TrainingKeys,
)
from qsem.experiments.personalise import PersonaliseConfig
from qsem.experiments.self_distill import SelfDistillConfig
from qsem.models import ModelConfig
from qsem.runner import ConfigError, build_config, layer_config
from qsem.tasks.kleene import VOCAB_SIZE, KleeneTaskConfig


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def test_the_default_parts_are_the_library_defaults() -> None:
    cfg = KleeneConfig()
    assert cfg.model == ModelConfig(vocab_size=VOCAB_SIZE)
    assert cfg.task == KleeneTaskConfig()


@pytest.mark.parametrize("cls", [KleeneConfig, SelfDistillConfig, PersonaliseConfig])
def test_overrides_reach_the_parts(cls: type) -> None:
    cfg = build_config(cls(), layer_config(cls(), overrides=["s_dim=3", "hidden=9",
                                                             "max_depth=2", "lr=0.5"]))  # fmt: skip
    assert cfg.model.hidden == 9 and cfg.task.max_depth == 2 and cfg.lr == 0.5


def test_the_keys_stay_flat_and_in_their_order() -> None:
    keys = list(layer_config(KleeneConfig()))
    groups = ["seed", *_names(KleeneTaskKeys), *_names(LabelFractionKey),
              *_names(SemanticModelKeys), *_names(TrainingKeys)]  # fmt: skip
    assert keys == list(dict.fromkeys(groups))
    assert keys[:2] == ["seed", "n_train_kbs"] and keys[-1] == "threads"


def test_a_bad_part_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="head"):
        replace(KleeneConfig(), s_dim=2)  # the qutrit head needs s_dim = 3
    with pytest.raises(ConfigError, match="max_side"):
        KleeneConfig(max_side=9)


def test_the_head_comparisons_share_one_group_of_training_keys() -> None:
    from qsem.experiments.qutrit_noise import QutritNoiseConfig
    from qsem.experiments.qutrit_vs_classical import HeadTrainingKeys, QvCConfig

    group = _names(HeadTrainingKeys)
    for cls in (QvCConfig, QutritNoiseConfig):
        names = _names(cls)
        start = names.index(group[0])
        assert names[start : start + len(group)] == group, cls.__name__
    noise = QutritNoiseConfig(hidden=5, epochs=7, lr=0.1, kleene_train_kbs=3)
    base = noise.base()  # the qutrit-vs-classical config of the same data and training
    assert {k: getattr(base, k) for k in group} == {k: getattr(noise, k) for k in group}
    with pytest.raises(ConfigError, match="'epochs'"):
        QvCConfig(epochs=0)


def _holds_group(cls: type, group: type) -> None:
    names, keys = _names(cls), _names(group)
    start = names.index(keys[0])
    assert names[start : start + len(keys)] == keys, cls.__name__


def test_profiles_and_narrow_semantic_hold_the_task_key_group() -> None:
    from qsem.experiments.narrow_semantic import SemanticNarrowConfig
    from qsem.experiments.profiles import ProfilesConfig

    for cls in (ProfilesConfig, SemanticNarrowConfig):
        _holds_group(cls, KleeneTaskKeys)
        assert cls().task == KleeneTaskConfig()  # the library's generator defaults
        cfg = cls(n_entities=12, max_side=1)  # keys neither config declared before
        assert (cfg.task.n_entities, cfg.task.max_side) == (12, 1)
    assert ProfilesConfig(n_entities=12).kleene().task.n_entities == 12
    with pytest.raises(ConfigError, match="narrow_depth"):
        SemanticNarrowConfig(min_depth=2, narrow_depth=1)
