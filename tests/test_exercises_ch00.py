"""Chapter 0's self-checks accept the worked solutions and reject wrong ones."""

import torch.nn.functional as F

from animlib.exercises import ch00


def test_copy_last_accepts_solution_and_rejects_mistakes():
    assert ch00.check_copy_last(lambda x: x[:, -1:])
    assert not ch00.check_copy_last(lambda x: None)
    assert not ch00.check_copy_last(lambda x: x[:, :1])  # oldest frame
    assert not ch00.check_copy_last(lambda x: x[:, -1])  # channel axis dropped


def l1_step(t, batch):
    x, y = batch
    with t.autocast():
        loss = F.l1_loss(t.models["model"](x), y)
    t.optimize(loss)
    return {"loss": loss}


def test_step_fn_accepts_solution_and_rejects_mistakes():
    assert ch00.check_step_fn(l1_step)
    assert not ch00.check_step_fn(None)

    def no_update(t, batch):
        x, y = batch
        return {"loss": F.l1_loss(t.models["model"](x), y)}

    assert not ch00.check_step_fn(no_update)

    def wrong_target(t, batch):
        x, y = batch
        loss = F.l1_loss(t.models["model"](x), -y)
        t.optimize(loss)
        return {"loss": loss}

    assert not ch00.check_step_fn(wrong_target)

    def raises(t, batch):
        raise RuntimeError("boom")

    assert not ch00.check_step_fn(raises)


def test_unsolved_step_prints_hint(capsys):
    assert not ch00.check_step_fn(lambda t, b: None)
    assert "Not solved yet" in capsys.readouterr().out
