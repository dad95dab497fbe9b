"""Tests for animlib.cinemagraph: shapes and gradients, the motion kernel, training that beats baselines."""


import pytest
import torch

from animlib.cinemagraph import (
    CinemagraphConfig,
    CinemagraphDRQN,
    CinemagraphGenerator,
    CinemagraphSettings,
    DRQNSchedule,
    DRQNStep,
    FrameDiscriminator,
    GeneratorStep,
    action_metrics,
    apply_motion_kernel,
    best_matching_accuracy,
    cinemagraph_metrics,
    evaluate_generator,
    evaluate_policy,
    region_motion,
    scale_grad,
)
from animlib.data.scenes import SceneStream, make_scenes
from animlib.engine import Trainer
from animlib.rl import make_target

torch.set_num_threads(1)


def test_motion_kernel_shifts_by_one_pixel():
    x = torch.rand(2, 3, 6, 7)
    k = torch.zeros(2, 5, 5)
    k[0, 2, 1] = 1.0  # offset dx = -1: output p takes x[p - 1] -> moves right
    k[1, 3, 2] = 1.0  # offset dy = +1: output p takes x[p + 1] -> moves up
    y = apply_motion_kernel(x, k)
    torch.testing.assert_close(y[0, :, :, 1:], x[0, :, :, :-1])
    torch.testing.assert_close(y[0, :, :, 0], x[0, :, :, 0])  # replicated border
    torch.testing.assert_close(y[1, :, :-1], x[1, :, 1:])
    ident = torch.zeros(2, 5, 5)
    ident[:, 2, 2] = 1
    torch.testing.assert_close(apply_motion_kernel(x, ident), x)
    with pytest.raises(ValueError, match="kernel"):
        apply_motion_kernel(x, torch.zeros(3, 5, 5))



def test_package_reexports_every_name_of_its_modules():
    import animlib.cinemagraph as C
    from animlib.cinemagraph import evaluation, networks, settings, steps

    parts = [*networks.__all__, *steps.__all__, *evaluation.__all__, *settings.__all__]
    assert sorted(parts) == sorted(C.__all__) and len(set(parts)) == len(parts)
    for mod in (networks, steps, evaluation, settings):
        assert all(getattr(C, n) is getattr(mod, n) for n in mod.__all__)
    G = CinemagraphGenerator(CinemagraphConfig(widths=(8, 16), hidden=8))
    assert isinstance(G.encoder, C.FrameMapEncoder)
    assert [k for k in G.state_dict() if k.startswith("encoder.")][:3] == [
        "encoder.levels.0.0.0.weight", "encoder.levels.0.0.0.bias", "encoder.levels.0.0.1.weight"]

def test_scale_grad():
    x = torch.ones(3, requires_grad=True)
    y = scale_grad(x, 0.25)
    torch.testing.assert_close(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 0.25))


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"peephole": False},
        {"peephole_size": (4, 4)},
        {"widths": (8, 16, 16), "hidden": 8},
        {"motion_kernel": 3, "num_actions": 3},
    ],
)
def test_generator_shapes_and_gradients(opts):
    cfg = CinemagraphConfig(**{"widths": (8, 16), "hidden": 8, "kernel_hidden": 16, **opts})
    G = CinemagraphGenerator(cfg)
    x = torch.rand(2, 3, 16, 16)
    actions = torch.randint(cfg.num_actions, (2, 4)) if cfg.num_actions else None
    y, info = G(x, 4, actions=actions, return_info=True)
    assert y.shape == (2, 4, 3, 16, 16)
    assert info["mask"].shape == (2, 4, 1, 16, 16)
    assert info["kernel"].shape == (2, 4, cfg.motion_kernel, cfg.motion_kernel)
    torch.testing.assert_close(info["kernel"].sum((2, 3)), torch.ones(2, 4))
    (y - torch.rand_like(y)).pow(2).mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None]
    if cfg.num_actions:  # no pooled-latent kernel path
        assert all("kernel_mlp" not in n for n in missing)
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in G.parameters())


def test_generator_rejects_bad_input():
    G = CinemagraphGenerator(widths=(8, 16), hidden=8)
    with pytest.raises(ValueError, match="divisible"):
        G(torch.rand(1, 3, 18, 18), 2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        G(torch.rand(1, 1, 16, 16), 2)
    with pytest.raises(TypeError, match="unknown"):
        CinemagraphGenerator(color=True)
    Ga = CinemagraphGenerator(widths=(8, 16), hidden=8, num_actions=2)
    with pytest.raises(ValueError, match="actions"):
        Ga(torch.rand(1, 3, 16, 16), 2)


@pytest.mark.parametrize("widths", [(8, 16), (8, 16, 32)])
def test_discriminator_shapes_and_gradients(widths):
    D = FrameDiscriminator(3, widths)
    x = torch.rand(5, 3, 32, 32, requires_grad=True)
    out = D(x)
    assert out.shape == (5,)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in D.parameters())
    with pytest.raises(ValueError, match="flatten"):
        D(torch.rand(2, 4, 3, 32, 32))


def test_drqn_rollout_policies():
    net = CinemagraphDRQN(CinemagraphConfig(widths=(8, 16), hidden=8, num_actions=3, q_hidden=16, max_steps=8))
    x = torch.rand(4, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    for policy in ["greedy", "epsilon", "random", "constant", torch.zeros(4, 5, dtype=torch.long)]:
        ro = net.rollout(x, 5, policy=policy, epsilon=0.5, generator=g, constant=2)
        assert ro["frames"].shape == (4, 5, 3, 16, 16)
        assert ro["q"].shape == (4, 5, 3) and ro["actions"].shape == (4, 5)
    ro = net.rollout(x, 5, policy="greedy")
    torch.testing.assert_close(ro["actions"], ro["q"].argmax(2))
    assert (net.rollout(x, 5, policy="constant", constant=2)["actions"] == 2).all()
    with pytest.raises(ValueError, match="max_steps"):
        net.rollout(x, 9)
    with pytest.raises(ValueError, match="num_actions"):
        CinemagraphDRQN(CinemagraphConfig(num_actions=0))


def test_metrics_known_answers():
    s = make_scenes(4, seed=0)
    T = s.frames.shape[1]
    perfect = torch.cat([s.frames[:, 1:], s.frames[:, :1]], 1)  # ŷ_1..ŷ_T, ŷ_T = x
    m = cinemagraph_metrics(perfect, s.frames, s.mask)
    assert m["motion_mse"] == 0 and m["background_mse"] == 0 and m["loop_error"] == 0
    assert m["motion_energy_ratio"] == pytest.approx(1.0)
    static = s.frames[:, :1].repeat(1, T, 1, 1, 1)
    m2 = cinemagraph_metrics(static, s.frames, s.mask)
    assert m2["motion_mse"] == pytest.approx(m2["static_motion_mse"]) and m2["motion_mse"] > 0.01
    assert m2["motion_energy_ratio"] == 0
    blur = s.frames.mean(1, keepdim=True).repeat(1, T, 1, 1, 1)  # lowers MSE but does not move
    m3 = cinemagraph_metrics(blur, s.frames, s.mask)
    assert m3["motion_mse"] < m2["motion_mse"] and m3["motion_energy_ratio"] < 0.5


def test_region_restricts_motion_to_the_users_region():
    torch.manual_seed(0)
    G = CinemagraphGenerator(_tiny_cfg()).eval()
    x = torch.rand(2, 3, 24, 32)  # not square and not the training size: the generator is convolutional
    region = torch.zeros(1, 1, 24, 32)
    region[..., :, :12] = 1.0
    with torch.no_grad():
        y, info = G(x, 4, return_info=True, region=region)
        free = G(x, 4)
    assert torch.equal(y[..., 12:], x[:, None, ..., 12:].expand_as(y[..., 12:]))  # outside: an exact copy
    assert float((y[..., :12] - x[:, None, ..., :12]).abs().max()) > 1e-4  # inside: it moves
    assert float((free[..., 12:] - x[:, None, ..., 12:]).abs().max()) > 1e-4  # without it, the right half moves too
    assert float(info["mask"][..., 12:].max()) == 0
    with pytest.raises(ValueError, match="region must be"):
        G(x, 2, region=torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        G(x, 2, region=region * 2)


def test_region_motion_known_answers():
    T, H, W = 4, 6, 8
    region = torch.zeros(1, H, W)
    region[:, :, :4] = 1
    loop = torch.zeros(T, 3, H, W)
    loop[:, :, :, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0])[:, None, None, None]  # blinks inside only
    m = region_motion(loop, region)
    assert m["motion_energy"] == pytest.approx(float(torch.tensor([0.0, 1.0, 0.0, 1.0]).std()))
    assert m["background_leak"] == 0 and m["leak_ratio"] == 0
    loop[:, :, :, 4:] = loop[:, :, :, :4] * 0.5  # now half as much outside
    assert region_motion(loop, region)["leak_ratio"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="some pixels"):
        region_motion(loop, torch.ones(1, H, W))


def test_action_metrics_known_answers():
    y = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])  # scene 0 reverses after two steps
    follows = y.clone()
    m = action_metrics(follows, y)
    assert m["per_step_action_accuracy"] == 1 and m["action_change_recall"] == 1 and m["spurious_change_rate"] == 0
    stuck = torch.tensor([[0, 0, 0, 0], [2, 2, 2, 2]])  # an image classifier: one action per loop
    m = action_metrics(stuck, y)
    assert m["per_step_action_accuracy"] == pytest.approx(6 / 8) and m["action_change_recall"] == 0
    jumpy = torch.tensor([[0, 3, 2, 1], [2, 3, 2, 3]])  # changes all the time, once to a wrong action
    m = action_metrics(jumpy, y)
    assert m["action_change_recall"] == 1 and m["action_change_correct"] == 0
    assert m["spurious_change_rate"] == pytest.approx(5 / 5)
    assert action_metrics(y[1:], y[1:])["action_change_recall"] != action_metrics(y[1:], y[1:])["action_change_recall"]  # nan
    with pytest.raises(ValueError, match="both be"):
        action_metrics(y[:, :3], y)


def test_oracle_policy_follows_the_true_steps():
    torch.manual_seed(0)
    net = CinemagraphDRQN(_tiny_cfg(num_actions=2))
    s = make_scenes(3, seed=1, size=16, frames=4, num_classes=2, reverse=1.0)
    assert bool(s.reverses.all())
    out = evaluate_policy(net, s.frames, s.label, policy=s.step_label)
    assert torch.equal(out["actions"], s.step_label)
    with pytest.raises(ValueError, match="one action per scene and step"):
        evaluate_policy(net, s.frames, s.label, policy=s.step_label[:, :2])


def test_best_matching_accuracy():
    true = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([2, 2, 0, 0, 1, 0])  # a relabelling with one mistake
    acc, mapping = best_matching_accuracy(pred, true, 3)
    assert acc == pytest.approx(5 / 6)
    assert list(mapping) == [1, 2, 0]


def _tiny_cfg(**kw):
    return CinemagraphConfig(widths=(8, 16), hidden=16, kernel_hidden=32, q_hidden=32, max_steps=8, **kw)


@pytest.mark.slow
def test_generator_learns_better_than_static_inside_mask():
    torch.manual_seed(0)
    scene = dict(size=16, frames=4, num_classes=2, block=4, band=0.5)
    G = CinemagraphGenerator(_tiny_cfg())
    D = FrameDiscriminator(3, (8, 16))
    tr = Trainer({"g": G, "d": D}, {"g": torch.optim.Adam(G.parameters(), 1e-2),
                                    "d": torch.optim.Adam(D.parameters(), 2e-4)},
                 GeneratorStep(adv_weight=0.01, disc_frames=1), progress=False)
    tr.fit(SceneStream(16, seed=0, **scene), 80)
    held = make_scenes(64, seed=99, **scene)
    m, _ = evaluate_generator(G, held.frames, held.mask)
    assert m["motion_mse"] < 0.6 * m["static_motion_mse"], m
    assert m["motion_energy_ratio"] > 0.3, m
    assert "d_loss" in tr.history[-1] and "g_adv" in tr.history[-1]


@pytest.mark.slow
def test_drqn_beats_random_policy_on_tiny_setting():
    torch.manual_seed(0)
    scene = dict(size=16, frames=4, num_classes=2, block=4, band=0.5)
    net = CinemagraphDRQN(_tiny_cfg(num_actions=2), q_grad_scale=0.3)
    tgt = make_target(net)
    sch = DRQNSchedule(warmup=40, eps_steps=30)
    g = torch.Generator().manual_seed(0)
    tr = Trainer({"drqn": net}, {"drqn": torch.optim.Adam(net.parameters(), 1e-2)},
                 DRQNStep(schedule=sch, target_net=tgt, generator=g), progress=False)
    tr.fit(SceneStream(16, seed=0, **scene), 90)
    assert "td" in tr.history[-1]
    held = make_scenes(64, seed=99, **scene)
    greedy = evaluate_policy(net, held.frames, held.label)["return"].mean()
    rnd = evaluate_policy(net, held.frames, held.label, policy="random")["return"].mean()
    assert greedy > rnd, (greedy, rnd)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", ["generator", "drqn"])
def test_full_profile_one_step(chapter):
    from animlib.data.scenes import SceneStream as Stream

    st = CinemagraphSettings.full()
    scene, cfg = st.scene, st.model
    batch = Stream(1, scene, seed=0)(0)
    if chapter == "generator":
        G, D = CinemagraphGenerator(cfg), FrameDiscriminator(cfg.channels, cfg.disc_widths)
        tr = Trainer({"g": G, "d": D}, {"g": torch.optim.Adam(G.parameters()), "d": torch.optim.Adam(D.parameters())},
                     GeneratorStep(adv_weight=st.adv_weight, disc_frames=st.disc_frames),
                     progress=False, device="cpu")
    else:  # chapter 2's scenes (half reversing) and its episode memory, two steps so that one replays
        from dataclasses import replace as _replace

        batch = Stream(1, _replace(scene, reverse=st.drqn_reverse), seed=0)(0)
        net = CinemagraphDRQN(cfg, num_actions=scene.num_classes)
        assert st.drqn.replay_capacity > 0 and st.drqn.replay_batch > 0
        sch = _replace(st.drqn, warmup=0, eps_steps=10, replay_batch=1, replay_capacity=4)  # small: a CPU test
        tr = Trainer({"drqn": net}, {"drqn": torch.optim.Adam(net.parameters())},
                     DRQNStep(schedule=sch, target_net=make_target(net)),
                     progress=False, device="cpu")
    hist = tr.fit(lambda step: batch, 1 if chapter == "generator" else 2)
    assert torch.isfinite(torch.tensor(hist[-1]["loss"]))
    if chapter != "generator":
        assert hist[-1]["replayed"] == 2 and tr.step_fn.replay.inputs.shape[1:] == batch["frames"].shape[1:]


def test_drqn_replays_whole_episodes_and_checkpoints_them(tmp_path):
    torch.manual_seed(0)
    scene = dict(size=16, frames=4, num_classes=2, block=4, band=0.5, reverse=0.5)
    net = CinemagraphDRQN(_tiny_cfg(num_actions=2))
    sch = DRQNSchedule(warmup=1, eps_steps=2, replay_capacity=6, replay_batch=3)
    step = DRQNStep(schedule=sch, target_net=make_target(net), generator=torch.Generator().manual_seed(0))
    stream = SceneStream(4, seed=0, **scene)
    step(Trainer({"drqn": net}, {"drqn": torch.optim.Adam(net.parameters(), 1e-3)}, lambda *_: {}, progress=False),
         stream(0))  # makes the memory on the first batch
    tr = Trainer({"drqn": net}, {"drqn": torch.optim.Adam(net.parameters(), 1e-3)}, step,
                 extra={"replay": step.replay}, checkpoint_dir=tmp_path, progress=False)
    hist = tr.fit(stream, 4)
    assert "td" not in hist[0] and all(h["replayed"] > 0 for h in hist[1:])  # the update comes from replay
    assert len(step.replay) == 6  # a ring of whole episodes: 3 Q-learning batches of 4, capacity 6
    ep = step.replay.sample(2)
    assert ep["inputs"].shape == (2, 4, 3, 16, 16)
    # the stored first input of each episode is a still of the training stream
    stills = torch.cat([stream(k)["frames"][:, 0] for k in range(4)])
    assert all(bool((stills - x.float()).abs().amax((1, 2, 3)).min() < 1e-3) for x in ep["inputs"][:, 0])  # float16
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    torch.testing.assert_close(saved["extra"]["replay"]["inputs"], step.replay.inputs)


def test_drqn_lr_schedule_hand_values():
    from animlib.cinemagraph import drqn_lr_schedule

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sch = drqn_lr_schedule(opt, DRQNSchedule(warmup=10), total_steps=110, floor=0.2)
    lrs = []
    for _ in range(111):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    assert lrs[0] == lrs[9] == 1.0
    assert lrs[60] == pytest.approx(1.0 - 0.8 * 50 / 100)
    assert lrs[110] == pytest.approx(0.2)


def test_drqn_step_warmup_then_q_learning_metrics():
    torch.manual_seed(0)
    scene = dict(size=16, frames=4, num_classes=2, block=4, band=0.5)
    net = CinemagraphDRQN(_tiny_cfg(num_actions=2))
    tgt = make_target(net)
    sch = DRQNSchedule(warmup=2, eps_steps=2, teacher_every=2)
    tr = Trainer({"drqn": net}, {"drqn": torch.optim.Adam(net.parameters(), 1e-3)},
                 DRQNStep(schedule=sch, target_net=tgt), progress=False)
    hist = tr.fit(SceneStream(4, seed=0, **scene), 5)
    assert "replayed" not in hist[-1]  # no episode memory unless the schedule asks for one
    assert "td" not in hist[1] and "mse" in hist[1]  # warm-up: generator only
    assert "td" in hist[2] and "mse" in hist[2]  # first Q-learning iteration also trains the generator
    assert "td" in hist[3] and "mse" not in hist[3]  # teacher_every=2 skips it every other iteration
    # after the warm-up the target network was synced and then only moves slowly
    assert not all(torch.equal(a, b) for a, b in zip(tgt.parameters(), net.parameters()))
