"""Action labels: measured from held actions, stored in the world's config, read back, checked."""

from dataclasses import replace

import pytest
import torch

from opengenie import Genie, presets
from opengenie.evaluation.labels import arrow_keys, distinct, measure_labels
from opengenie.evaluation.playability import label


class PanWorld(Genie):
    """Action 1 pans the camera 2 px right per step, action 2 2 px left, action 3 up; others keep the frame."""

    MOVES = {1: (-2, 0), 2: (2, 0), 3: (0, 2)}  # torch.roll shifts (W, H) of the scene

    def rollout(self, prompt, actions, maskgit_steps=None, temperature=None, seed=None, use_cache=True):
        frames = [prompt[:, :, -1:]]
        for i in range(actions.shape[1]):
            moved = []
            for f, a in zip(frames[-1], actions[:, i]):
                sx, sy = self.MOVES.get(int(a), (0, 0))
                moved.append(torch.roll(f, (sy, sx), dims=(-2, -1)))
            frames.append(torch.stack(moved))
        return torch.cat(frames, dim=2)


def test_labels_and_arrows_of_a_world_with_known_moves():
    """Known moves get "walk right", "walk left", "jump"; the arrows map to them; repeated labels are numbered."""
    torch.manual_seed(0)
    prompts = torch.rand(3, 3, 1, 64, 64) * 2 - 1  # texture for the shift search
    labels, keys, rows = measure_labels(PanWorld(presets.tiny()).eval(), prompts, steps=4)
    assert labels[1:4] == ("walk right", "walk left", "jump")
    assert keys["ArrowRight"] == 1 and keys["ArrowLeft"] == 2 and keys["ArrowUp"] == 3 and keys["ArrowDown"] == 0
    assert labels[0] == "still 1" and labels[-1].startswith("still ")
    assert distinct(["a", "b", "a"]) == ["a 1", "b", "a 2"]
    assert "ArrowRight" not in arrow_keys([{"action": 0, "dx_total": 0.5, "dy_total": 0.0}])


def test_a_label_names_the_other_axis_only_where_it_is_a_real_part_of_the_motion():
    """The game's RIGHT from CoinRun states (+14.4 px, -3.3: the camera rises a little) is a walk,
    its UP (+9.2, -14.2) a jump to the right; under 2 px is still, whatever the ratio."""
    assert label(14.4, -3.3) == "walk right" and label(-7.4, 2.2) == "walk left"
    assert label(9.2, -14.2) == "jump right" and label(-2.5, 4.1) == "fall left" and label(0.7, -17.0) == "jump"
    assert label(1.5, 0.3) == "still" and label(0.0, 1.9) == "still" and label(-3.0, -3.0) == "jump left"


def test_labels_travel_with_the_world_and_are_checked(tmp_path):
    """Labels and arrow keys saved in config.json come back from from_pretrained; wrong ones are refused."""
    config = presets.tiny()
    n = config.dynamics.num_actions
    labelled = replace(config, action_labels=tuple(f"a{i}" for i in range(n)), arrow_keys={"ArrowUp": 2})
    world = Genie.from_pretrained(Genie(labelled).save_pretrained(tmp_path / "w"))
    assert world.config.action_labels == labelled.action_labels and world.config.arrow_keys == {"ArrowUp": 2}
    with pytest.raises(ValueError, match="label every action or none"):
        replace(config, action_labels=("one",))
    with pytest.raises(ValueError, match="arrow_keys must map"):
        replace(config, arrow_keys={"ArrowUp": n})
