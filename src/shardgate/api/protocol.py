"""Request models of the OpenAI-compatible API. Only pydantic here: no engine types.

Unknown fields are accepted and ignored, as OpenAI clients send fields that a server may
not know; fields we know are validated, and features we do not offer are refused with a
clear 400 rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "GenerationOptions",
    "StreamOptions",
    "TextPart",
]

MAX_N = 8
MAX_STOP = 4


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class StreamOptions(_Wire):
    include_usage: StrictBool = False


class TextPart(_Wire):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None
    name: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]


class GenerationOptions(_Wire):
    """Fields shared by chat and text completions."""

    model: StrictStr
    max_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Annotated[StrictInt, Field(ge=1, le=MAX_N)] = 1
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=MAX_STOP)] | None = None
    seed: Annotated[StrictInt, Field(ge=-(2**63), lt=2**64)] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def _refuse(data: Any, unsupported: tuple[str, ...]) -> Any:
    if isinstance(data, dict):
        for field in unsupported:
            if data.get(field) not in (None, False, [], 0):
                raise ValueError(f"'{field}' is not supported by this server")
    return data


class ChatCompletionRequest(GenerationOptions):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse(data, ("tools", "functions", "logprobs", "audio", "prediction"))

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens else self.max_tokens


class CompletionRequest(GenerationOptions):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_N)]
    echo: StrictBool = False
    suffix: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse(data, ("logprobs", "best_of", "suffix"))

    @property
    def token_limit(self) -> int | None:
        # The OpenAI default for legacy completions is 16 tokens.
        return self.max_tokens if self.max_tokens is not None else 16

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class EmbeddingRequest(_Wire):
    model: StrictStr
    input: (
        StrictStr
        | Annotated[list[StrictStr], Field(min_length=1, max_length=2048)]
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[list[StrictInt]], Field(min_length=1, max_length=2048)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None
    user: StrictStr | None = None
