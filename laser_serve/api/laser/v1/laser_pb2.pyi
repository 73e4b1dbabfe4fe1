from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("n", "temperature", "top_p", "max_tokens", "seed", "stop")
    N_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, n: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("prompt", "messages", "sampling", "candidates", "context_text", "policy", "task", "return_all_scores", "return_context", "score_with_all", "expect_feedback")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TEXT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RETURN_ALL_SCORES_FIELD_NUMBER: _ClassVar[int]
    RETURN_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_WITH_ALL_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    sampling: SamplingParams
    candidates: _containers.RepeatedScalarFieldContainer[str]
    context_text: str
    policy: str
    task: str
    return_all_scores: bool
    return_context: bool
    score_with_all: bool
    expect_feedback: bool
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., candidates: _Optional[_Iterable[str]] = ..., context_text: _Optional[str] = ..., policy: _Optional[str] = ..., task: _Optional[str] = ..., return_all_scores: _Optional[bool] = ..., return_context: _Optional[bool] = ..., score_with_all: _Optional[bool] = ..., expect_feedback: _Optional[bool] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("text", "token_count", "finish_reason", "score", "rm_scores", "mean_logprob")
    class RmScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RM_SCORES_FIELD_NUMBER: _ClassVar[int]
    MEAN_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_count: int
    finish_reason: str
    score: float
    rm_scores: _containers.ScalarMap[str, float]
    mean_logprob: float
    def __init__(self, text: _Optional[str] = ..., token_count: _Optional[int] = ..., finish_reason: _Optional[str] = ..., score: _Optional[float] = ..., rm_scores: _Optional[_Mapping[str, float]] = ..., mean_logprob: _Optional[float] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("generate_seconds", "encode_seconds", "select_seconds", "score_seconds", "total_seconds", "rm_seconds")
    class RmSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    GENERATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENCODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SELECT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SCORE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    generate_seconds: float
    encode_seconds: float
    select_seconds: float
    score_seconds: float
    total_seconds: float
    rm_seconds: _containers.ScalarMap[str, float]
    def __init__(self, generate_seconds: _Optional[float] = ..., encode_seconds: _Optional[float] = ..., select_seconds: _Optional[float] = ..., score_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ..., rm_seconds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("selection_id", "chosen_index", "chosen_text", "reward_models", "policy", "candidates", "timings", "truncated", "context")
    SELECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_TEXT_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODELS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    selection_id: str
    chosen_index: int
    chosen_text: str
    reward_models: _containers.RepeatedScalarFieldContainer[str]
    policy: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    timings: StageTimings
    truncated: bool
    context: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, selection_id: _Optional[str] = ..., chosen_index: _Optional[int] = ..., chosen_text: _Optional[str] = ..., reward_models: _Optional[_Iterable[str]] = ..., policy: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., truncated: _Optional[bool] = ..., context: _Optional[_Iterable[float]] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("selection_id", "reward")
    SELECTION_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    selection_id: str
    reward: float
    def __init__(self, selection_id: _Optional[str] = ..., reward: _Optional[float] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("reward_model", "normalized_reward")
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_REWARD_FIELD_NUMBER: _ClassVar[int]
    reward_model: str
    normalized_reward: float
    def __init__(self, reward_model: _Optional[str] = ..., normalized_reward: _Optional[float] = ...) -> None: ...

class GetSelectorStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ArmState(_message.Message):
    __slots__ = ("reward_model", "pulls", "selections", "mean_reward", "last_update_unix")
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    PULLS_FIELD_NUMBER: _ClassVar[int]
    SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_UNIX_FIELD_NUMBER: _ClassVar[int]
    reward_model: str
    pulls: int
    selections: int
    mean_reward: float
    last_update_unix: float
    def __init__(self, reward_model: _Optional[str] = ..., pulls: _Optional[int] = ..., selections: _Optional[int] = ..., mean_reward: _Optional[float] = ..., last_update_unix: _Optional[float] = ...) -> None: ...

class SelectorState(_message.Message):
    __slots__ = ("policy", "params", "arms", "pending_selections")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    PENDING_SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    policy: str
    params: _containers.ScalarMap[str, str]
    arms: _containers.RepeatedCompositeFieldContainer[ArmState]
    pending_selections: int
    def __init__(self, policy: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., arms: _Optional[_Iterable[_Union[ArmState, _Mapping]]] = ..., pending_selections: _Optional[int] = ...) -> None: ...

class ListRewardModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RewardModelInfo(_message.Message):
    __slots__ = ("name", "kind", "device", "max_length", "memory_bytes", "model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    device: str
    max_length: int
    memory_bytes: int
    model: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., device: _Optional[str] = ..., max_length: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class ListRewardModelsResponse(_message.Message):
    __slots__ = ("reward_models",)
    REWARD_MODELS_FIELD_NUMBER: _ClassVar[int]
    reward_models: _containers.RepeatedCompositeFieldContainer[RewardModelInfo]
    def __init__(self, reward_models: _Optional[_Iterable[_Union[RewardModelInfo, _Mapping]]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "policy_model", "generator", "context_encoder", "context_dim", "policy", "max_n", "max_model_len", "tasks")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_MODEL_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_ENCODER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_DIM_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_N_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    version: str
    policy_model: str
    generator: str
    context_encoder: str
    context_dim: int
    policy: str
    max_n: int
    max_model_len: int
    tasks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., policy_model: _Optional[str] = ..., generator: _Optional[str] = ..., context_encoder: _Optional[str] = ..., context_dim: _Optional[int] = ..., policy: _Optional[str] = ..., max_n: _Optional[int] = ..., max_model_len: _Optional[int] = ..., tasks: _Optional[_Iterable[str]] = ...) -> None: ...
