"""Model-free twins of the DP solution: tabular Q-learning and SARSA on an env, epsilon-greedy.

`td_control` is the whole algorithm, top to bottom; `q_learning` and `sarsa` pick the target:
- Q-learning (off-policy): target = r + gamma * max_a' Q(s', a'),
- SARSA (on-policy): target = r + gamma * Q(s', a') with a' the epsilon-greedy action taken next.
`terminated` stops bootstrapping; `truncated` (end of the data) does not (the market goes on).
Epsilon decays linearly from `epsilon_start` to `epsilon_end` over the first `exploration_fraction` of
the episodes; the learning rate is alpha / (1 + alpha_decay * visits(s, a)).

Works on any Gymnasium env with discrete actions given `state_fn(obs) -> int`: the trading env
(`rl.env.TradingEnv`, states from `rl.discretize.StateSpace.from_obs`) or `MDPEnv`, a known MDP as an env
(tests: Q-learning converges to the DP solution).

Credit timing: with latency = stride (the default 1 / 1) a fill lands at the end of block b_t, which is also
the env's next mark, so the env pays a new position's price move one step after the trade; TD learning finds
its value through the next state. The DP model (`rl.tabular`) credits the same P&L fill to fill, to the
decision's own state. Both agree when the discretized market state is Markov; where a coarse state is not,
they can differ: `train_q(reference=dp_policy)` reports the share of visited states where they agree.

Initial policy: `initial_q` starts the table with a small bonus on a given action per state (e.g. the
supervised policy, `rl.supervised.state_policy`), so the greedy policy starts as that policy and TD learning
moves it from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import gymnasium
import numpy as np
from gymnasium import spaces

from rl.tabular import HOLD, N_ACTIONS, DiscretePolicy, greedy


class MDPEnv(gymnasium.Env):
    """A `rl.tabular.DenseMDP` as a Gymnasium env: observation = state index, reward = R[s, a], next state
    drawn from P[a, s]; episodes start in `start` (or a uniform state) and are truncated after `horizon`."""

    def __init__(self, mdp, horizon: int = 50, start: int | None = None):
        super().__init__()
        self.mdp, self.horizon, self.start = mdp, horizon, start
        self.observation_space = spaces.Discrete(mdp.n_states)
        self.action_space = spaces.Discrete(mdp.n_actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.s = self.start if self.start is not None else int(self.np_random.integers(self.mdp.n_states))
        return self.s, {}

    def step(self, action):
        r = float(self.mdp.reward[self.s, action])
        self.s = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.P[action, self.s]))
        self.t += 1
        return self.s, r, False, self.t >= self.horizon, {}


@dataclass
class TDResult:
    q: np.ndarray  # [S, A]
    visits: np.ndarray  # [S, A]
    episode_returns: list[float] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)
    steps: int = 0

    def summary(self) -> dict:
        r = self.episode_returns
        return {"episodes": len(r), "steps": self.steps, "first_return": r[0] if r else None,
                "last_return": r[-1] if r else None, "final_epsilon": self.epsilons[-1] if self.epsilons else None,
                "visited_states": int(np.sum(self.visits.sum(axis=1) > 0))}


def initial_q(policy: np.ndarray, n_actions: int = N_ACTIONS, bonus: float = 1e-6) -> np.ndarray:
    """A Q-table of zeros with `bonus` on `policy[s]` in every state s."""
    q = np.zeros((len(policy), n_actions))
    q[np.arange(len(policy)), np.asarray(policy, dtype=np.int64)] = bonus
    return q


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    return end if duration <= 0 else start + (end - start) * min(t / duration, 1.0)


def td_control(env, state_fn, n_states: int, method: str = "q_learning", episodes: int = 100, gamma: float = 0.99,
               alpha: float = 0.1, alpha_decay: float = 0.0, epsilon_start: float = 1.0, epsilon_end: float = 0.05,
               exploration_fraction: float = 0.5, q_init: np.ndarray | None = None, seed: int = 0,
               reset_options: dict | None = None, prefer: int | None = HOLD) -> TDResult:
    """Tabular TD control (Q-learning or SARSA) with an epsilon-greedy behaviour policy."""
    if method not in ("q_learning", "sarsa"):
        raise ValueError("method must be 'q_learning' or 'sarsa'")
    rng = np.random.default_rng(seed)
    state_of = lambda o: int(np.ravel(state_fn(o))[0])
    n_actions = int(env.action_space.n)
    q = np.zeros((n_states, n_actions)) if q_init is None else np.array(q_init, dtype=np.float64)
    visits = np.zeros((n_states, n_actions), dtype=np.int64)
    prefer = prefer if prefer is not None and prefer < n_actions else None
    result = TDResult(q, visits)

    def behave(s: int, eps: float) -> int:
        if rng.random() < eps:
            return int(rng.integers(n_actions))
        return int(greedy(q[s:s + 1], prefer)[0])

    for episode in range(episodes):
        eps = linear_schedule(epsilon_start, epsilon_end, int(exploration_fraction * episodes), episode)
        obs, _ = env.reset(seed=seed + episode, options=reset_options)
        s = state_of(obs)
        a = behave(s, eps)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(a)
            s2 = state_of(obs)
            a2 = behave(s2, eps)
            if terminated:
                target = r
            elif method == "q_learning":
                target = r + gamma * q[s2].max()
            else:
                target = r + gamma * q[s2, a2]
            lr = alpha / (1.0 + alpha_decay * visits[s, a])
            q[s, a] += lr * (target - q[s, a])
            visits[s, a] += 1
            total += r
            result.steps += 1
            s, a, done = s2, a2, terminated or truncated
        result.episode_returns.append(total)
        result.epsilons.append(eps)
    return result


def td_control_vector(envs, state_fn, n_states: int, method: str = "q_learning", total_steps: int = 10_000,
                      gamma: float = 0.99, alpha: float = 0.1, alpha_decay: float = 0.0, epsilon_start: float = 1.0,
                      epsilon_end: float = 0.05, exploration_fraction: float = 0.5, q_init: np.ndarray | None = None,
                      seed: int = 0, prefer: int | None = HOLD) -> TDResult:
    """`td_control` on a Gymnasium vector env with next-step autoreset (e.g. `rl.env.VectorTradingEnv`): N books
    step together (one env call for all), then their N transitions update the one Q-table in turn. Epsilon decays
    over the first `exploration_fraction` of `total_steps` (transitions learned from, over all books). The step
    after a book's episode ends is its reset: that pseudo-transition is not learned."""
    if method not in ("q_learning", "sarsa"):
        raise ValueError("method must be 'q_learning' or 'sarsa'")
    rng = np.random.default_rng(seed)
    n, n_actions = envs.num_envs, int(envs.single_action_space.n)
    q = np.zeros((n_states, n_actions)) if q_init is None else np.array(q_init, dtype=np.float64)
    visits = np.zeros((n_states, n_actions), dtype=np.int64)
    prefer = prefer if prefer is not None and prefer < n_actions else None
    result = TDResult(q, visits)

    def behave(states: np.ndarray, eps: float) -> np.ndarray:
        explore = rng.random(n) < eps
        return np.where(explore, rng.integers(n_actions, size=n), greedy(q[states], prefer))

    obs, _ = envs.reset(seed=seed)
    s = np.asarray(state_fn(obs), dtype=np.int64)
    eps = epsilon_start
    a = behave(s, eps)
    totals = np.zeros(n)
    resetting = np.zeros(n, dtype=bool)  # these books reset at this step: no transition to learn
    while result.steps < total_steps:
        eps = linear_schedule(epsilon_start, epsilon_end, int(exploration_fraction * total_steps), result.steps)
        obs, r, terminated, truncated, _ = envs.step(a)
        s2 = np.asarray(state_fn(obs), dtype=np.int64)
        a2 = behave(s2, eps)
        for i in np.flatnonzero(~resetting):
            if terminated[i]:
                target = r[i]
            elif method == "q_learning":
                target = r[i] + gamma * q[s2[i]].max()
            else:
                target = r[i] + gamma * q[s2[i], a2[i]]
            lr = alpha / (1.0 + alpha_decay * visits[s[i], a[i]])
            q[s[i], a[i]] += lr * (target - q[s[i], a[i]])
            visits[s[i], a[i]] += 1
            totals[i] += r[i]
            result.steps += 1
            if terminated[i] or truncated[i]:
                result.episode_returns.append(float(totals[i]))
                result.epsilons.append(eps)
                totals[i] = 0.0
        resetting = (terminated | truncated) & ~resetting
        s, a = s2, a2
    return result


def q_learning(env, state_fn, n_states: int, **kwargs) -> TDResult:
    return td_control(env, state_fn, n_states, method="q_learning", **kwargs)


def sarsa(env, state_fn, n_states: int, **kwargs) -> TDResult:
    return td_control(env, state_fn, n_states, method="sarsa", **kwargs)


# --- the policy ------------------------------------------------------------------------------------------

class QPolicy(DiscretePolicy):
    """Greedy in a learned Q-table over `rl.discretize.StateSpace` states (ties -> hold). States never visited in
    training use `fallback` when given."""

    kind = "qtable"

    def __init__(self, space, q: np.ndarray, visits: np.ndarray | None = None, fallback=None, meta: dict | None = None):
        self.space = space
        self.q = np.asarray(q, dtype=np.float64)
        self.visits = np.ones(self.q.shape, dtype=np.int64) if visits is None else np.asarray(visits)
        self.fallback = fallback
        self.meta = meta or {}

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(obs))
        states = self.space.from_obs(obs)
        actions = greedy(self.q[states], HOLD)
        unseen = self.visits[states].sum(axis=1) == 0
        if self.fallback is not None and unseen.any():
            actions[unseen] = self.fallback.act(obs[unseen])
        return actions

    def to_artifact(self) -> tuple[dict, dict[str, np.ndarray]]:
        from rl.tabular import pack_artifact

        return pack_artifact(self.kind, self.space, self.meta, {"q": self.q, "visits": self.visits}, self.fallback)

    @classmethod
    def from_artifact(cls, meta: dict, arrays: dict[str, np.ndarray]) -> QPolicy:
        from rl.discretize import StateSpace
        from rl.tabular import _sub, policy_from_artifact

        space = StateSpace.from_artifact(meta["space"], _sub(arrays, "space."))
        fallback = policy_from_artifact(meta["fallback"], _sub(arrays, "fallback.")) if "fallback" in meta else None
        extra = {k: v for k, v in meta.items() if k not in ("kind", "space", "fallback")}
        return cls(space, arrays["q"], arrays["visits"], fallback, extra)


def train_q(episode, split, space, env_config, method: str = "q_learning", episodes: int = 20,
            q_init: np.ndarray | None = None, fallback=None, seed: int = 0, reference: np.ndarray | None = None,
            num_envs: int = 1, episode_length: int = 256, **kwargs) -> tuple[QPolicy, dict]:
    """TD control on the trading env over the training rows only. The env runs on the train rows but the last
    (`episode.slice(start, stop - 1)`): the last step's mark is then the end of the block before the split's
    last decision, so no reward reads a block that decision does not know.

    num_envs 1: a `rl.env.TradingEnv`, `episodes` passes over the whole train slice. num_envs > 1: a
    `rl.env.VectorTradingEnv` of that many books with random starts and episodes of `episode_length` rows,
    for the same number of transitions (`episodes` x rows), several times faster.
    `env_config` must be in "discrete" mode; `space` is fitted on the same rows (`rl.tabular.fit_state_space`).
    `reference`: a DP policy per state; the report then has the share of visited states where they agree."""
    from rl.env import TradingEnv, VectorTradingEnv

    rows = split.train
    train = episode.slice(rows.start, rows.stop - 1)
    if num_envs == 1:
        env = TradingEnv(train, env_config)
        result = td_control(env, space.from_obs, space.n_states, method=method, episodes=episodes, q_init=q_init,
                            seed=seed, **kwargs)
    else:
        config = replace(env_config, random_start=True, episode_length=min(episode_length, len(train)))
        envs = VectorTradingEnv(train, config, num_envs=num_envs)
        result = td_control_vector(envs, space.from_obs, space.n_states, method=method,
                                   total_steps=episodes * len(train), q_init=q_init, seed=seed, **kwargs)
    summary = result.summary()
    if reference is not None:
        visited = result.visits.sum(axis=1) > 0
        summary["agreement_with_reference"] = float(np.mean(greedy(result.q, HOLD)[visited] == reference[visited]))
    meta = {"method": method, "episodes": episodes, "num_envs": num_envs, "seed": seed,
            "feature_names": list(episode.feature_names), "td": summary}
    return QPolicy(space, result.q, result.visits, fallback, meta), {**summary, "method": method,
                                                                     "returns": result.episode_returns}
