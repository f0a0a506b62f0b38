"""receiver.mentions: the people map → who is mentioned, shared by every IM channel."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes.harness import DIGEST, GOLDEN_FIXTURES, notification

from receiver.mentions import MentionConfig, MentionConfigError, Mentions

PEOPLE = {
    "mobiles": ["100"],
    "people_label": ["team", "owner"],
    "people": {"payments": {"mobiles": ["200"], "user_ids": ["pay"]}, "alice": {"user_ids": ["alice"]},
               "marketdata": {"user_ids": ["md", "pay"]}},
    "at_all_severities": ["Critical"],
}


def test_static_and_label_driven_deduplicated_in_order():
    cfg = MentionConfig.parse(PEOPLE)
    n = notification(GOLDEN_FIXTURES[0])  # team=payments, severity=critical
    alert = replace(n.alerts[0], labels={**n.alerts[0].labels, "owner": "alice"})
    got = cfg.resolve([replace(n, alerts=[alert, alert])])
    assert got == Mentions(("100", "200"), ("pay", "alice"), True)


def test_resolved_only_mentions_nobody_unless_on_resolved():
    resolved = notification(GOLDEN_FIXTURES[1])  # team=marketdata, all resolved
    assert not MentionConfig.parse(PEOPLE).resolve([resolved])
    got = MentionConfig.parse({**PEOPLE, "on_resolved": True}).resolve([resolved])
    assert got == Mentions(("100",), ("md", "pay"), False)  # no @all: nothing fires


def test_only_firing_alerts_select_people_and_at_all():
    mixed = notification(GOLDEN_FIXTURES[2])  # firing warning/critical/info + resolved ones
    got = MentionConfig.parse({"at_all_severities": ["warning"]}).resolve([mixed])
    assert got.at_all
    assert not MentionConfig.parse({"at_all_severities": ["emergency"]}).resolve([mixed]).at_all


def test_digest_is_the_union():
    got = MentionConfig.parse(PEOPLE).resolve([notification(p) for p in DIGEST])
    assert set(got.user_ids) == {"pay", "md"} and got.at_all


def test_meta_round_trip():
    m = Mentions(("1",), ("u",), True)
    assert Mentions.from_meta({"mentions": m.as_dict()}) == m and Mentions.from_meta({}) == Mentions()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("nope", "expected a mapping"),
        ({"mobile": ["1"]}, "unknown key"),
        ({"people": {"x": {"mobiles": ["1"]}}}, "people_label"),
        ({"people_label": "team", "people": {"x": ["1"]}}, "mentions.people.x"),
        ({"people_label": "team", "people": {"x": {"phone": "1"}}}, "unknown key"),
        ({"mobiles": [""]}, "empty entry"),
        ({"user_ids": {"a": 1}}, "expected a list"),
    ],
)
def test_bad_config_names_the_key(raw, needle):
    with pytest.raises(MentionConfigError, match=needle):
        MentionConfig.parse(raw)
