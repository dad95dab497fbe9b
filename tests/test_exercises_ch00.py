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


def test_copy_last_reports_a_raising_attempt(capsys):
    assert not ch00.check_copy_last(lambda x: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_step_fn_rejects_the_squared_error_and_the_sum(capsys):
    def mse_step(t, batch):
        x, y = batch
        loss = F.mse_loss(t.models["model"](x), y)
        t.optimize(loss)
        return {"loss": loss}

    assert not ch00.check_step_fn(mse_step)
    assert "squared error" in capsys.readouterr().out

    def sum_step(t, batch):
        x, y = batch
        loss = F.l1_loss(t.models["model"](x), y, reduction="sum")
        t.optimize(loss)
        return {"loss": loss}

    assert not ch00.check_step_fn(sum_step)

    def reports_another_number(t, batch):
        x, y = batch
        loss = F.l1_loss(t.models["model"](x), y)
        t.optimize(loss)
        return {"loss": 2 * loss}

    assert not ch00.check_step_fn(reports_another_number)
    assert "returned" in capsys.readouterr().out


def test_resume_accepts_a_resumed_run_and_rejects_restarts_and_remaining_steps(capsys):
    def finish(make_trainer, data, steps):
        trainer = make_trainer()
        trainer.fit(data, steps, resume=True)
        return trainer

    assert ch00.check_resume(finish)

    def from_scratch(make_trainer, data, steps):
        trainer = make_trainer()
        trainer.fit(data, steps)
        return trainer

    capsys.readouterr()
    assert not ch00.check_resume(from_scratch)
    assert "resume=True" in capsys.readouterr().out

    def remaining_only(make_trainer, data, steps):
        trainer = make_trainer()
        trainer.fit(data, steps - steps // 3, resume=True)
        return trainer

    assert not ch00.check_resume(remaining_only)
    assert "total number of steps" in capsys.readouterr().out
    assert not ch00.check_resume(None)
    assert not ch00.check_resume(lambda m, d, s: None)

    def raises(make_trainer, data, steps):
        raise RuntimeError("boom")

    assert not ch00.check_resume(raises)
    assert "RuntimeError" in capsys.readouterr().out
