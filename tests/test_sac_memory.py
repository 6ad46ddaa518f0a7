"""A continuous-action memory task learned by LiquidSAC-CfC and not by SAC-MLP within a small budget.

CueHoldEnv(hold=10): a cue in {-1, +1} shown at the first step only must be held as the action for the next
10 steps, each paying ``-(action - cue)^2``. A feed-forward policy cannot beat action 0 (return -10); perfect
recall returns 0. ~30 s on one core.
"""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from lnn_control.sb3 import LiquidSAC, evaluate_agent
from lnn_control.sb3.diagnostic_envs import CueHoldEnv

HOLD, STEPS, SEED = 10, 1800, 1
COMMON = dict(learning_starts=200, gamma=0.9, learning_rate=3e-3, seed=SEED)


def _final_return(model) -> float:  # type: ignore[no-untyped-def]
    model.learn(STEPS)
    env = make_vec_env(lambda: CueHoldEnv(hold=HOLD), n_envs=4, seed=99)
    returns, _ = evaluate_agent(model, env, n_eval_episodes=20, deterministic=True)
    return float(np.mean(returns))


def test_liquid_sac_cfc_learns_the_cue_and_sac_mlp_cannot() -> None:
    th.set_num_threads(1)
    env = make_vec_env(lambda: CueHoldEnv(hold=HOLD), n_envs=4, seed=SEED)
    liquid = LiquidSAC(
        "LiquidPolicy", env, batch_size=48, chunk_len=14, burn_in=2, buffer_size=20_000,
        policy_kwargs=dict(units=8, net_arch=[32, 32], cell_kwargs=dict(backbone_units=16)), **COMMON,
    )  # fmt: skip
    env = make_vec_env(lambda: CueHoldEnv(hold=HOLD), n_envs=4, seed=SEED)
    mlp = SAC("MlpPolicy", env, batch_size=48, policy_kwargs=dict(net_arch=[32, 32]), **COMMON)
    liquid_return, mlp_return = _final_return(liquid), _final_return(mlp)
    print(f"returns: LiquidSAC-CfC {liquid_return:.2f}, SAC-MLP {mlp_return:.2f}")
    assert mlp_return < -0.9 * HOLD, mlp_return  # no memory: at best the action 0
    assert liquid_return > -0.3 * HOLD, liquid_return  # holds the cue
