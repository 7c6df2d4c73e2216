"""Events of the agent's conversation: turns, messages, reasoning, tool calls, model calls.

Part of the one tagged union of ``events.py``, whose evolution rules they follow.
"""

from __future__ import annotations

from typing import Any

from .envelope import Event


class TurnStarted(Event, tag="turn_started"):
    """A turn (one prompt → agent response cycle) began. Nesting is begin/end, not containment.

    Attributes:
        turn: 1-based turn number.
        prompt: the user or harness input that started the turn, when there is one.
    """

    turn: int
    prompt: str = ""


class TurnEnded(Event, tag="turn_ended"):
    """A turn ended.

    Attributes:
        turn: the turn number of the matching ``turn_started``.
        status: ``completed``, ``failed`` or ``interrupted``.
        error: the error message when the turn failed.
    """

    turn: int
    status: str = "completed"
    error: str = ""


class MessageAdded(Event, tag="message_added"):
    """A chat message (user, assistant, system) was added to the conversation.

    Attributes:
        role: ``user``, ``assistant``, ``system`` or ``tool``.
        text: the message text (a prefix when ``text_blob`` is set).
        text_blob: sha256 of the full text in the blob store, when it was too large to inline.
        message_id: the provider's or agent's id of the message, when there is one.
        model: the model that produced an assistant message.
        branch: id of the conversation branch this message belongs to (rewinds keep siblings).
        parent_id: the id of the message this one follows, for branching transcripts.
    """

    role: str
    text: str = ""
    text_blob: str = ""
    message_id: str = ""
    model: str = ""
    branch: str = ""
    parent_id: str = ""


class ReasoningAdded(Event, tag="reasoning_added"):
    """A reasoning (thinking) block was produced.

    Attributes:
        text: reasoning text or summary as the provider exposed it.
        encrypted: true when the provider returned only an opaque/encrypted blob.
    """

    text: str = ""
    encrypted: bool = False


class ToolCalled(Event, tag="tool_called"):
    """The agent called a tool.

    Attributes:
        call_id: the id pairing this call with its ``tool_returned``.
        tool: the tool's name as the agent names it (``shell``, ``apply_patch``, ``Edit``).
        arguments: the call's arguments (decoded JSON when possible, else the raw string).
        command: the shell command, for shell-like tools.
        paths: workdir paths the call names, when the adapter can tell.
    """

    call_id: str
    tool: str
    arguments: Any = None
    command: str = ""
    paths: list[str] = []


class ToolReturned(Event, tag="tool_returned"):
    """A tool call finished.

    Attributes:
        call_id: id of the matching ``tool_called``.
        tool: the tool's name.
        status: ``ok``, ``error``, ``declined`` or ``timeout``.
        output: the output (a prefix when ``output_blob`` is set).
        output_blob: sha256 of the full output in the blob store.
        output_bytes: size of the full output in bytes.
        exit_code: the process exit code, for shell-like tools.
        duration_ms: wall time of the call, when known.
        error: the error message when ``status`` is not ``ok``.
    """

    call_id: str
    tool: str = ""
    status: str = "ok"
    output: str = ""
    output_blob: str = ""
    output_bytes: int = 0
    exit_code: int | None = None
    duration_ms: float | None = None
    error: str = ""


class ModelCalled(Event, tag="model_called"):
    """A model call completed or failed.

    Attributes:
        model: the model as called.
        ok: whether the call returned a response.
        error: the error message of a failed call.
        duration_ms: latency.
        request_id: the provider's id.
        retry: attempt number when the client retried (0 = first attempt).
    """

    model: str = ""
    ok: bool = True
    error: str = ""
    duration_ms: float | None = None
    request_id: str = ""
    retry: int = 0
