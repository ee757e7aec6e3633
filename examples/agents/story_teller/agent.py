"""A Cerebrum-layout agent (as in Cerebrum's cerebrum/example/agents/*): a class with run(task)
that asks the kernel's LLM through the Cerebrum SDK's llm_chat and returns its answer. The
kernel runs it with `aios run examples/agents/story_teller` or AIOS's POST /agents/submit."""
import os

from cerebrum.llm.apis import llm_chat


class StoryTeller:
    def __init__(self, agent_name):
        self.agent_name = agent_name
        self.messages = [{"role": "system", "content": "You write very short stories."}]

    def run(self, task_input):
        self.messages.append({"role": "user", "content": f"Write a two-sentence story about: {task_input}"})
        response = llm_chat(agent_name=self.agent_name, messages=self.messages,
                            base_url=os.environ.get("CEREBRUM_KERNEL_URL", "http://localhost:8000"))
        return {"agent_name": self.agent_name, "result": response["response"]["response_message"], "rounds": 1}
