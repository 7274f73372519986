"""Safety policies (defaults, tenant overrides) and the tenant deny-list detector."""

from __future__ import annotations

import pytest

from shardgate.safety.denylist import DenyList, deny_list
from shardgate.safety.policy import PolicyError, SafetyPolicy, merge_policy


def test_the_default_policy_is_the_documented_one() -> None:
    policy = SafetyPolicy()
    assert policy.input.model_dump() == {
        "pii": "redact",
        "secrets": "redact",
        "injection": "block",
        "harmful": "block",
        "toxicity": "flag",
        "deny": "block",
    }
    assert policy.output.harmful == "block" and policy.output.pii == "flag"
    assert policy.restore and policy.uses_classifiers


def test_an_override_merges_field_by_field() -> None:
    merged = merge_policy(
        SafetyPolicy(), {"input": {"pii": "block"}, "deny_terms": ["Project Zeus", " "]}
    )
    assert merged.input.pii == "block"
    assert merged.input.secrets == "redact"  # not named: the default
    assert merged.deny_terms == ("Project Zeus",)
    assert merge_policy(SafetyPolicy(), None) == SafetyPolicy()
    quiet = {"input": dict.fromkeys(("injection", "harmful", "toxicity"), "allow")}
    quiet["output"] = dict.fromkeys(("harmful", "toxicity"), "allow")
    assert not merge_policy(SafetyPolicy(), quiet).uses_classifiers


@pytest.mark.parametrize(
    "override",
    [
        {"input": {"injection": "redact"}},  # a whole-text judgement cannot be redacted
        {"output": {"pii": "redact"}},
        {"input": {"pii": "shout"}},
        {"deny_patterns": ["(unclosed"]},
        {"deny_terms": ["x" * 201]},
        {"unknown": True},
    ],
)
def test_an_invalid_override_is_refused_with_its_reason(override: dict[str, object]) -> None:
    with pytest.raises(PolicyError) as caught:
        merge_policy(SafetyPolicy(), override)
    assert str(caught.value)


def test_deny_terms_match_whole_words_case_insensitively() -> None:
    deny = DenyList(["project zeus", "c++"], [r"\bACME-\d{4}\b"])
    text = "Tell me about Project Zeus and acme-1234, not projects zeusian or c++ code."
    found = [text[f.start : f.end] for f in deny.scan(text)]
    assert found == ["Project Zeus", "acme-1234", "c++"]
    assert all(f.category == "deny" for f in deny.scan(text))
    assert not DenyList([], []) and deny_list((), ()) is deny_list((), ())


def test_a_catastrophic_pattern_times_out_instead_of_hanging() -> None:
    deny = DenyList([], [r"(?:(a|aa)+)+b"])  # exponential backtracking without a "b"
    with pytest.raises(TimeoutError):
        deny.scan("a" * 60)
