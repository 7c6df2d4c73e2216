"""Run one OpenHands (software-agent-sdk) conversation; executed by the SDK's own venv.

    python openhands_session.py WORKDIR PERSISTENCE_DIR MODEL TASK

The LLM is the scripted model server (``AGTRACE_OH_URL``, chat completions); the tools are the
SDK's terminal and file editor (plus its built-in finish). The conversation is persisted under
PERSISTENCE_DIR/<conversation id>/ (``base_state.json`` + ``events/``), as the SDK writes it, and
the events are exported as PERSISTENCE_DIR/trajectory.json ``{conversation_id, events: [...]}``
through the SDK's own event serialization (``model_dump``).
"""

from __future__ import annotations

import json
import os
import sys

from openhands.sdk import LLM, Agent, Conversation, Tool
from openhands.tools.file_editor import FileEditorTool
from openhands.tools.terminal import TerminalTool
from pydantic import SecretStr


def main() -> int:
    workdir, persist, model, task = sys.argv[1:5]
    llm = LLM(model=f"openai/{model}", base_url=os.environ["AGTRACE_OH_URL"],
              api_key=SecretStr("sk-scripted-dummy"), usage_id="agent", num_retries=0,
              native_tool_calling=True)
    agent = Agent(llm=llm, tools=[Tool(name=TerminalTool.name), Tool(name=FileEditorTool.name)])
    conversation = Conversation(agent=agent, workspace=workdir, persistence_dir=persist,
                                visualizer=None)
    conversation.send_message(task)
    conversation.run()
    # the {conversation_id, events} shape of a V1 trajectory export, serialized by the SDK itself
    events = [event.model_dump(mode="json") for event in conversation.state.events]
    export = {"conversation_id": str(conversation.id), "events": events}
    with open(os.path.join(persist, "trajectory.json"), "w") as fh:
        json.dump(export, fh, indent=2)
    print(conversation.state.execution_status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
