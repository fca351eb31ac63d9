"""Batch presets: crops and mixing are pure functions of (seed, epoch, step), and mixing keeps its sums."""

from __future__ import annotations

import pytest
import torch

from modelbuilder.training.presets import ClassificationPresetEval, ClassificationPresetTrain, MixBatch, batch_generator


def _batch(n: int = 8, size: int = 40) -> torch.Tensor:
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def test_train_crops_are_a_pure_function_of_the_batch_position():
    preset, batch = ClassificationPresetTrain(32, 0.25), _batch()
    a = preset(batch, batch_generator(0, 1, 2))
    assert a.shape == (8, 3, 32, 32)
    torch.testing.assert_close(a, preset(batch, batch_generator(0, 1, 2)))
    assert not torch.equal(a, preset(batch, batch_generator(0, 1, 3)))


def test_streams_of_one_batch_are_independent():
    assert batch_generator(0, 1, 2, stream=1).initial_seed() != batch_generator(0, 1, 2).initial_seed()


def test_eval_preset_is_the_center_crop():
    batch = _batch(2, 36)
    x = ClassificationPresetEval(32)(batch)
    torch.testing.assert_close(x, batch[:, 2:34, 2:34].permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixing_gives_soft_targets_that_sum_to_one_and_repeats_for_the_same_batch(mixup, cutmix):
    mix = MixBatch(5, mixup_alpha=mixup, cutmix_alpha=cutmix)
    x = ClassificationPresetEval(32)(_batch())
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    for step in range(6):
        mixed, soft = mix(x, y, batch_generator(0, 0, step, stream=1))
        again, soft_again = mix(x, y, batch_generator(0, 0, step, stream=1))
        torch.testing.assert_close(mixed, again)
        torch.testing.assert_close(soft, soft_again)
        assert soft.shape == (8, 5)
        torch.testing.assert_close(soft.sum(1), torch.ones(8))
        assert (soft[torch.arange(8), y] >= 0).all()
        assert mixed.shape == x.shape


def test_no_alpha_means_no_mixing():
    assert not MixBatch(3)
