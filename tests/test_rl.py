"""Tests for animlib.rl: ε schedule, Bellman targets, target sync, replay, tabular Q-learning."""

import numpy as np
import pytest
import torch
from torch import nn

from animlib.rl import (
    EpisodeReplay,
    EpsilonSchedule,
    ReplayBuffer,
    TabularMDP,
    bellman_targets,
    epsilon_greedy,
    make_target,
    policy_evaluation,
    q_learning,
    slippery_chain,
    sync_target,
    value_iteration,
)

torch.set_num_threads(1)


def test_epsilon_schedule_hand_values():
    lin = EpsilonSchedule(1.0, 0.1, 100)
    assert lin(0) == pytest.approx(1.0)
    assert lin(50) == pytest.approx(0.55)
    assert lin(100) == pytest.approx(0.1)
    assert lin(1000) == pytest.approx(0.1)
    exp = EpsilonSchedule(1.0, 0.0, 100, kind="exponential")
    assert exp(100) == pytest.approx(np.exp(-5.0))
    with pytest.raises(ValueError):
        EpsilonSchedule(1.5, 0.1, 10)
    with pytest.raises(ValueError):
        lin(-1)


def test_bellman_targets_hand_values():
    r = torch.tensor([1.0, 0.0, -1.0])
    q_next_tgt = torch.tensor([[1.0, 3.0], [2.0, 0.5], [4.0, 4.0]])
    done = torch.tensor([0.0, 0.0, 1.0])
    y = bellman_targets(r, q_next_tgt, done, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 3.0, 0.0 + 0.5 * 2.0, -1.0]))
    # Double DQN: the online net picks a' (here argmax 0 and 1), the target net evaluates it
    q_next_onl = torch.tensor([[9.0, 0.0], [0.0, 9.0], [0.0, 0.0]])
    y2 = bellman_targets(r, q_next_tgt, done, gamma=0.5, next_q_online=q_next_onl)
    torch.testing.assert_close(y2, torch.tensor([1.0 + 0.5 * 1.0, 0.0 + 0.5 * 0.5, -1.0]))
    with pytest.raises(ValueError):
        bellman_targets(r, q_next_tgt, done, gamma=1.5)


def test_epsilon_greedy():
    q = torch.tensor([[0.0, 1.0, 0.0]]).repeat(2000, 1)
    assert (epsilon_greedy(q, 0.0) == 1).all()
    g = torch.Generator().manual_seed(0)
    a = epsilon_greedy(q, 0.3, g)
    # P(greedy) = 0.7 + 0.3/3 = 0.8
    assert abs((a == 1).float().mean().item() - 0.8) < 0.03


def test_target_network_sync():
    net = nn.Linear(3, 2)
    tgt = make_target(net)
    assert all(not p.requires_grad for p in tgt.parameters())
    with torch.no_grad():
        net.weight.add_(1.0)
    w_old = tgt.weight.clone()
    sync_target(tgt, net, tau=0.25)
    torch.testing.assert_close(tgt.weight, 0.75 * w_old + 0.25 * net.weight)
    sync_target(tgt, net)
    torch.testing.assert_close(tgt.weight, net.weight)


def test_replay_buffer_ring_and_state_dict():
    buf = ReplayBuffer(4, state_shape=(2,))
    for k in range(6):
        buf.add(torch.full((2,), float(k)), k % 2, float(k), torch.full((2,), k + 1.0), k == 5)
    assert len(buf) == 4
    assert sorted(buf.rewards.tolist()) == [2.0, 3.0, 4.0, 5.0]  # the two oldest were overwritten
    batch = buf.sample(8, torch.Generator().manual_seed(0))
    assert batch["state"].shape == (8, 2)
    torch.testing.assert_close(batch["next_state"], batch["state"] + 1)
    other = ReplayBuffer(4, state_shape=(2,))
    other.load_state_dict(buf.state_dict())
    assert other.size == 4 and other.pos == buf.pos
    torch.testing.assert_close(other.states, buf.states)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(2).sample(1)


def test_episode_replay_keeps_whole_episodes_in_a_ring():
    buf = EpisodeReplay(3, steps=4, obs_shape=(1, 2, 2))
    for k in range(2):  # two batches of two episodes: the first episode is overwritten
        ids = torch.tensor([2 * k, 2 * k + 1], dtype=torch.float32)
        inputs = ids[:, None, None, None, None] + torch.arange(4.0)[None, :, None, None, None] / 10  # (2, 4, 1, 2, 2)
        buf.add(inputs.expand(2, 4, 1, 2, 2), torch.full((2, 4), k), ids[:, None].expand(2, 4))
    assert len(buf) == 3 and sorted(buf.rewards[:, 0].tolist()) == [1.0, 2.0, 3.0]
    ep = buf.sample(16, torch.Generator().manual_seed(0))
    assert ep["inputs"].shape == (16, 4, 1, 2, 2) and ep["actions"].shape == (16, 4)
    # every sampled episode is intact: its steps in order, its reward matching its inputs
    torch.testing.assert_close(ep["inputs"][:, :, 0, 0, 0] - ep["rewards"], torch.arange(4.0)[None].expand(16, 4) / 10)
    other = EpisodeReplay(3, steps=4, obs_shape=(1, 2, 2))
    other.load_state_dict(buf.state_dict())
    assert other.pos == buf.pos and torch.equal(other.inputs, buf.inputs)
    with pytest.raises(ValueError, match="episodes must be"):
        buf.add(torch.zeros(1, 3, 1, 2, 2), torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="empty"):
        EpisodeReplay(2, 4, (1,)).sample(1)


def test_value_iteration_known_answer():
    # Two states, one action each: s0 -> s1 (reward 1), s1 -> s1 (reward 2), γ = 0.5.
    P = np.zeros((2, 1, 2))
    P[0, 0, 1] = P[1, 0, 1] = 1.0
    mdp = TabularMDP(P, np.array([[1.0], [2.0]]), gamma=0.5)
    Q, _ = value_iteration(mdp)
    # V(s1) = 2 / (1 - 0.5) = 4; Q(s0) = 1 + 0.5 * 4 = 3
    np.testing.assert_allclose(Q[:, 0], [3.0, 4.0], atol=1e-8)
    np.testing.assert_allclose(policy_evaluation(mdp, np.array([0, 0])), [3.0, 4.0], atol=1e-8)


def test_value_iteration_satisfies_bellman_optimality():
    mdp = slippery_chain(7, slip=0.25, gamma=0.8)
    Q, _ = value_iteration(mdp)
    V = Q.max(1) * ~mdp.terminal
    backup = mdp.R + mdp.gamma * mdp.P @ V
    backup[mdp.terminal] = 0
    np.testing.assert_allclose(Q, backup, atol=1e-8)
    # the greedy policy's value equals V*
    np.testing.assert_allclose(policy_evaluation(mdp, Q.argmax(1)), V, atol=1e-6)


def test_tabular_q_learning_converges_to_value_iteration():
    mdp = slippery_chain()
    q_star, _ = value_iteration(mdp)
    Q, hist = q_learning(mdp, steps=30_000, seed=0)
    assert np.abs(Q - q_star).max() < 0.05
    alive = ~mdp.terminal
    assert (Q[alive].argmax(1) == q_star[alive].argmax(1)).all()
    assert len(hist["return"]) > 100


def test_q_learning_is_not_trivially_right():
    # Too few steps must leave a large error: the test above can fail.
    mdp = slippery_chain()
    q_star, _ = value_iteration(mdp)
    Q, _ = q_learning(mdp, steps=30, seed=0)
    assert np.abs(Q - q_star).max() > 0.2


def test_q_learning_with_replay():
    mdp = slippery_chain()
    q_star, _ = value_iteration(mdp)
    buf = ReplayBuffer(2000, state_dtype=torch.long)
    Q, _ = q_learning(mdp, steps=8000, seed=1, replay=buf, replay_batch=2)
    assert len(buf) == 2000
    assert np.abs(Q - q_star).max() < 0.08


def test_mdp_validation():
    with pytest.raises(ValueError, match="sum to 1"):
        TabularMDP(np.zeros((2, 1, 2)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="gamma"):
        slippery_chain(gamma=1.0)


# ----------------------------------------------------------------------------- chapter 2 exercises


def test_chapter2_exercise_checks_pass_and_fail(capsys):
    from animlib.exercises import ch02

    assert ch02.check_discounted_return(ch02.solution_discounted_return)
    assert not ch02.check_discounted_return(lambda r, g: None)
    assert "Not solved yet" in capsys.readouterr().out
    assert not ch02.check_discounted_return(lambda r, g: sum(x * g ** (k + 1) for k, x in enumerate(r)))

    assert ch02.check_q_update(ch02.solution_q_update)
    assert not ch02.check_q_update(lambda *a: None)

    def ignores_done(Q, s, a, r, s2, done, alpha, gamma):
        Q = np.array(Q, float)
        Q[s, a] += alpha * (r + gamma * Q[s2].max() - Q[s, a])
        return Q

    assert not ch02.check_q_update(ignores_done)
    assert not ch02.check_q_update(lambda *a: 1 / 0)

    def in_place(Q, s, a, r, s2, done, alpha, gamma):  # right values, but the caller's table changes
        target = r + (0.0 if done else gamma * Q[s2].max())
        Q[s, a] += alpha * (target - Q[s, a])
        return Q

    capsys.readouterr()
    assert not ch02.check_q_update(in_place)
    assert "changed the table it was given" in capsys.readouterr().out

    assert ch02.check_double_dqn_target(ch02.solution_double_dqn_target)
    assert not ch02.check_double_dqn_target(lambda *a: None)
    plain = lambda r, qo, qt, d, g: r + g * (1 - d) * qt.max(1).values  # noqa: E731
    assert not ch02.check_double_dqn_target(plain)
    assert "plain DQN" in capsys.readouterr().out
