"""Stable-Baselines3 side: liquid recurrent actor-critic policies, the sequence rollout buffer, LiquidPPO,
LiquidSAC with its sequence replay buffer, and the agent catalogue loader (``agents/*.yaml``)."""

from lnn_control.sb3.agent_evaluation import evaluate_agent
from lnn_control.sb3.agents import agent_for_task, available_agents, build_agent, load_agent_config
from lnn_control.sb3.buffers import (
    SequenceDictRolloutBuffer,
    SequenceRolloutBuffer,
    SequenceRolloutBufferSamples,
)
from lnn_control.sb3.carry import RecurrentCarry
from lnn_control.sb3.dt_tracking import DtTracker, query_nominal_dts
from lnn_control.sb3.liquid_ppo import LiquidPPO
from lnn_control.sb3.liquid_sac import LiquidSAC
from lnn_control.sb3.policies import (
    LiquidActorCriticPolicy,
    LiquidPolicy,
    MultiInputLiquidActorCriticPolicy,
    MultiInputLiquidPolicy,
)
from lnn_control.sb3.recurrence import CELLS, TorchRNN, make_recurrence, make_wiring
from lnn_control.sb3.sac_policies import LiquidSACPolicy
from lnn_control.sb3.sequence_replay import SequenceReplayBuffer, SequenceReplaySamples

__all__ = [
    "CELLS",
    "DtTracker",
    "LiquidActorCriticPolicy",
    "LiquidPPO",
    "LiquidPolicy",
    "LiquidSAC",
    "LiquidSACPolicy",
    "MultiInputLiquidActorCriticPolicy",
    "MultiInputLiquidPolicy",
    "RecurrentCarry",
    "SequenceDictRolloutBuffer",
    "SequenceReplayBuffer",
    "SequenceReplaySamples",
    "SequenceRolloutBuffer",
    "SequenceRolloutBufferSamples",
    "TorchRNN",
    "agent_for_task",
    "available_agents",
    "build_agent",
    "evaluate_agent",
    "load_agent_config",
    "make_recurrence",
    "make_wiring",
    "query_nominal_dts",
]
