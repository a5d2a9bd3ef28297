"""A diverged run is `failed`, never `finished` (issue 19, item 3): the non-finite guard's oracle, and a real
Lightning fit whose loss turns NaN at a known step."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from aegir.errors import DivergedError
from aegir.run.divergence import NonFiniteGuard, nonfinite_reason


@pytest.mark.parametrize("value,expected", [
    (1.5, None), (1e11, None), (None, None), (torch.tensor(2.0), None),
    (math.nan, "loss is NaN at step 7"), (torch.tensor(float("nan")), "loss is NaN at step 7"),
    (math.inf, "loss is inf at step 7"), (-math.inf, "loss is -inf at step 7"),
])
def test_nonfinite_reason(value, expected) -> None:
    assert nonfinite_reason("loss", value, 7) == expected


class _DivergesAtStep(L.LightningModule):
    """A linear regression whose loss is NaN from optimizer step `nan_from` on (1-based, as global_step counts)."""

    def __init__(self, nan_from: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.nan_from = nan_from

    def training_step(self, batch, batch_idx):  # noqa: ANN001
        loss = self.layer(batch).pow(2).mean()
        return loss * math.nan if self.global_step + 1 >= self.nan_from else loss

    def validation_step(self, batch, batch_idx):  # noqa: ANN001
        self.log("val/loss", self.layer(batch).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path: Path, nan_from: int, stop: bool) -> tuple[NonFiniteGuard, L.Trainer]:
    data = torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=4)
    guard = NonFiniteGuard("val/loss", stop=stop)
    last = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None, save_top_k=1,
                                               enable_version_counter=False)
    trainer = L.Trainer(max_steps=10, val_check_interval=2, check_val_every_n_epoch=None, callbacks=[guard, last],
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(_DivergesAtStep(nan_from), data, data)
    return guard, trainer


def test_nan_loss_stops_the_fit_and_keeps_the_checkpoint_before_it(tmp_path: Path) -> None:
    with pytest.raises(DivergedError, match="^loss is NaN at step 5$"):
        _fit(tmp_path, nan_from=5, stop=True)
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["global_step"] == 4  # the validation at step 4, before the divergence
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())


def test_run_on_remembers_the_first_divergence(tmp_path: Path) -> None:
    guard, trainer = _fit(tmp_path, nan_from=5, stop=False)
    assert trainer.global_step == 10
    assert guard.reason == "loss is NaN at step 5"
    with pytest.raises(DivergedError, match="weights are not finite at step 10"):
        guard.check_weights(trainer, trainer.lightning_module)
