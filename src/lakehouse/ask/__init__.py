"""`/v1/ask`: a model answers from the lakehouse, calling tools the server runs for it."""

from lakehouse.ask.backend import HttpLakehouse, Lakehouse, connect
from lakehouse.ask.context import open_toolbox
from lakehouse.ask.loop import AskAnswer, AskEvent, AskLoop, AskRequest, Step
from lakehouse.ask.tools import Toolbox, ToolResult

__all__ = [
    "AskAnswer",
    "AskEvent",
    "AskLoop",
    "AskRequest",
    "HttpLakehouse",
    "Lakehouse",
    "Step",
    "ToolResult",
    "Toolbox",
    "connect",
    "open_toolbox",
]
