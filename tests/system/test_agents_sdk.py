"""System tier: the OpenAI Agents SDK (openai-agents, pinned in requirements.txt) pointed at
aiosd runs an agent with one function tool to a final text answer, through chat completions
and through the Responses API (the SDK's default model). With
tools sent on every turn and tool_choice auto, aiosd used to force a tool call on every turn,
so the loop never ended (issue 12). Real aiosd, real model, the official SDK."""
from __future__ import annotations

import pytest
from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner, function_tool,
                    set_tracing_disabled)
from openai import AsyncOpenAI

from aiosd_helpers import MODEL_NAME

set_tracing_disabled(True)
CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    CALLS.append(city)
    return f"It is sunny in {city}, 21 C."


MODELS = [OpenAIChatCompletionsModel, OpenAIResponsesModel]


def agent(base_url: str, model_class, **settings) -> Agent:
    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="sdk-agent")
    model = model_class(model=MODEL_NAME, openai_client=client)
    return Agent(name="assistant", instructions="Be brief.", tools=[get_weather], model=model,
                 model_settings=ModelSettings(temperature=0, max_tokens=48, **settings))


@pytest.mark.parametrize("model_class", MODELS, ids=["chat_completions", "responses"])
def test_agent_reaches_a_final_text_answer(base_url, model_class):
    CALLS.clear()
    result = Runner.run_sync(agent(base_url, model_class), "Say hello in French.", max_turns=4)
    assert isinstance(result.final_output, str) and result.final_output.strip(), result
    assert not CALLS  # the model answered; nothing forced a call


@pytest.mark.parametrize("model_class", MODELS, ids=["chat_completions", "responses"])
def test_agent_calls_its_tool_then_answers(base_url, model_class):
    """tool_choice required on the first turn (the SDK resets it to auto after a call): the
    model calls the tool, the SDK sends the result back as a tool message, and the next turn
    ends the run with text."""
    CALLS.clear()
    result = Runner.run_sync(agent(base_url, model_class, tool_choice="required"), "What is the weather in Paris?", max_turns=4)
    assert CALLS, result
    assert isinstance(result.final_output, str) and result.final_output.strip(), result
