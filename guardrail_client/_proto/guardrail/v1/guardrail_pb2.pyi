import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Sensitivity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SENSITIVITY_UNSPECIFIED: _ClassVar[Sensitivity]
    SENSITIVITY_PUBLIC: _ClassVar[Sensitivity]
    SENSITIVITY_PRIVATE: _ClassVar[Sensitivity]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    ALLOW: _ClassVar[Decision]
    FLAG: _ClassVar[Decision]
    BLOCK: _ClassVar[Decision]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    PASS: _ClassVar[Outcome]
    FAIL: _ClassVar[Outcome]
    ERROR: _ClassVar[Outcome]
    SKIPPED: _ClassVar[Outcome]
    PARTIAL: _ClassVar[Outcome]
SENSITIVITY_UNSPECIFIED: Sensitivity
SENSITIVITY_PUBLIC: Sensitivity
SENSITIVITY_PRIVATE: Sensitivity
DECISION_UNSPECIFIED: Decision
ALLOW: Decision
FLAG: Decision
BLOCK: Decision
OUTCOME_UNSPECIFIED: Outcome
PASS: Outcome
FAIL: Outcome
ERROR: Outcome
SKIPPED: Outcome
PARTIAL: Outcome

class Passage(_message.Message):
    __slots__ = ("id", "text", "title", "url", "sensitivity")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    title: str
    url: str
    sensitivity: Sensitivity
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., title: _Optional[str] = ..., url: _Optional[str] = ..., sensitivity: _Optional[_Union[Sensitivity, str]] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("request_id", "app", "question", "context", "response", "samples", "invariants", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    INVARIANTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    app: str
    question: str
    context: _containers.RepeatedCompositeFieldContainer[Passage]
    response: str
    samples: _containers.RepeatedScalarFieldContainer[str]
    invariants: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., app: _Optional[str] = ..., question: _Optional[str] = ..., context: _Optional[_Iterable[_Union[Passage, _Mapping]]] = ..., response: _Optional[str] = ..., samples: _Optional[_Iterable[str]] = ..., invariants: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("start", "end", "kind", "message", "passage_id", "score", "has_score")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HAS_SCORE_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    kind: str
    message: str
    passage_id: str
    score: float
    has_score: bool
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., passage_id: _Optional[str] = ..., score: _Optional[float] = ..., has_score: _Optional[bool] = ...) -> None: ...

class InvariantResult(_message.Message):
    __slots__ = ("invariant", "outcome", "score", "threshold", "findings", "duration", "judge", "error", "judges", "judges_disagree", "findings_omitted", "checked", "unchecked", "unchecked_reason")
    INVARIANT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JUDGES_FIELD_NUMBER: _ClassVar[int]
    JUDGES_DISAGREE_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_OMITTED_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    UNCHECKED_FIELD_NUMBER: _ClassVar[int]
    UNCHECKED_REASON_FIELD_NUMBER: _ClassVar[int]
    invariant: str
    outcome: Outcome
    score: float
    threshold: float
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    duration: _duration_pb2.Duration
    judge: str
    error: str
    judges: _containers.RepeatedCompositeFieldContainer[JudgeResult]
    judges_disagree: bool
    findings_omitted: int
    checked: _containers.RepeatedCompositeFieldContainer[Span]
    unchecked: _containers.RepeatedCompositeFieldContainer[Span]
    unchecked_reason: str
    def __init__(self, invariant: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., judge: _Optional[str] = ..., error: _Optional[str] = ..., judges: _Optional[_Iterable[_Union[JudgeResult, _Mapping]]] = ..., judges_disagree: _Optional[bool] = ..., findings_omitted: _Optional[int] = ..., checked: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., unchecked: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., unchecked_reason: _Optional[str] = ...) -> None: ...

class JudgeResult(_message.Message):
    __slots__ = ("judge", "family", "score", "threshold", "passed", "error", "disagreement", "duration")
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    judge: str
    family: str
    score: float
    threshold: float
    passed: bool
    error: str
    disagreement: str
    duration: _duration_pb2.Duration
    def __init__(self, judge: _Optional[str] = ..., family: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., passed: _Optional[bool] = ..., error: _Optional[str] = ..., disagreement: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("request_id", "decision", "results", "duration", "review_sample_id", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REVIEW_SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    decision: Decision
    results: _containers.RepeatedCompositeFieldContainer[InvariantResult]
    duration: _duration_pb2.Duration
    review_sample_id: str
    error_code: int
    error_message: str
    def __init__(self, request_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., results: _Optional[_Iterable[_Union[InvariantResult, _Mapping]]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., review_sample_id: _Optional[str] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class GenerationChunk(_message.Message):
    __slots__ = ("start", "delta", "close")
    START_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    start: CheckRequest
    delta: str
    close: GenerationClose
    def __init__(self, start: _Optional[_Union[CheckRequest, _Mapping]] = ..., delta: _Optional[str] = ..., close: _Optional[_Union[GenerationClose, _Mapping]] = ...) -> None: ...

class GenerationClose(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, samples: _Optional[_Iterable[str]] = ...) -> None: ...

class GenerationVerdict(_message.Message):
    __slots__ = ("request_id", "decision", "started", "sentence", "leak", "final")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    LEAK_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    decision: Decision
    started: GenerationStarted
    sentence: SentenceVerdict
    leak: LeakVerdict
    final: FinalVerdict
    def __init__(self, request_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., started: _Optional[_Union[GenerationStarted, _Mapping]] = ..., sentence: _Optional[_Union[SentenceVerdict, _Mapping]] = ..., leak: _Optional[_Union[LeakVerdict, _Mapping]] = ..., final: _Optional[_Union[FinalVerdict, _Mapping]] = ...) -> None: ...

class GenerationStarted(_message.Message):
    __slots__ = ("sentence_invariants", "live_pii", "final_invariants")
    SENTENCE_INVARIANTS_FIELD_NUMBER: _ClassVar[int]
    LIVE_PII_FIELD_NUMBER: _ClassVar[int]
    FINAL_INVARIANTS_FIELD_NUMBER: _ClassVar[int]
    sentence_invariants: _containers.RepeatedScalarFieldContainer[str]
    live_pii: bool
    final_invariants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sentence_invariants: _Optional[_Iterable[str]] = ..., live_pii: _Optional[bool] = ..., final_invariants: _Optional[_Iterable[str]] = ...) -> None: ...

class SentenceVerdict(_message.Message):
    __slots__ = ("index", "start", "end", "results", "decision", "latency")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    index: int
    start: int
    end: int
    results: _containers.RepeatedCompositeFieldContainer[InvariantResult]
    decision: Decision
    latency: _duration_pb2.Duration
    def __init__(self, index: _Optional[int] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., results: _Optional[_Iterable[_Union[InvariantResult, _Mapping]]] = ..., decision: _Optional[_Union[Decision, str]] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LeakVerdict(_message.Message):
    __slots__ = ("findings", "checked_until", "decision")
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    CHECKED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    checked_until: int
    decision: Decision
    def __init__(self, findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., checked_until: _Optional[int] = ..., decision: _Optional[_Union[Decision, str]] = ...) -> None: ...

class FinalVerdict(_message.Message):
    __slots__ = ("response", "cut", "sentences")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CUT_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    response: CheckResponse
    cut: bool
    sentences: int
    def __init__(self, response: _Optional[_Union[CheckResponse, _Mapping]] = ..., cut: _Optional[bool] = ..., sentences: _Optional[int] = ...) -> None: ...

class ListInvariantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InvariantInfo(_message.Message):
    __slots__ = ("name", "enabled", "threshold", "on_fail", "on_error", "timeout_seconds", "judge", "on_partial")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ON_FAIL_FIELD_NUMBER: _ClassVar[int]
    ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    ON_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    threshold: float
    on_fail: str
    on_error: str
    timeout_seconds: float
    judge: str
    on_partial: str
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., threshold: _Optional[float] = ..., on_fail: _Optional[str] = ..., on_error: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., judge: _Optional[str] = ..., on_partial: _Optional[str] = ...) -> None: ...

class ListInvariantsResponse(_message.Message):
    __slots__ = ("invariants",)
    INVARIANTS_FIELD_NUMBER: _ClassVar[int]
    invariants: _containers.RepeatedCompositeFieldContainer[InvariantInfo]
    def __init__(self, invariants: _Optional[_Iterable[_Union[InvariantInfo, _Mapping]]] = ...) -> None: ...
