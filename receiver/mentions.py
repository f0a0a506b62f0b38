"""Who to @-mention for a message: static per target, plus owners looked up from alert labels.

Every IM channel takes the same ``mentions:`` block in its target config::

    mentions:
      mobiles: ["13800000000"]          # always mentioned (DingTalk, WeCom text)
      user_ids: ["zhangsan"]            # always mentioned (DingTalk userId, WeCom/Slack/Feishu/Telegram id)
      at_all: false                     # @all on every message
      at_all_severities: [critical]     # @all when a *firing* alert has one of these severities
                                        # (normalized like templates do: Critical/crit/page → critical)
      people_label: team                # label(s) whose value names an entry of ``people``
      people:
        payments: {mobiles: ["13900000000"], user_ids: ["lisi"]}
      on_resolved: false                # mention on all-resolved messages too (default: no)

Channels turn the resolved ``Mentions`` into their own syntax (``@138…`` + ``at.atMobiles`` for
DingTalk, ``<@U…>`` for Slack, ...), so the lookup logic lives here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from receiver.model import Notification
from receiver.templating import normalize_severity

_STR_LIST = {"type": "array", "items": {"type": ["string", "integer"]}}

#: JSON schema of the ``mentions`` key, shared by every IM channel's ``options_schema``.
MENTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "mobiles": _STR_LIST,
        "user_ids": _STR_LIST,
        "at_all": {"type": "boolean"},
        "at_all_severities": {"type": "array", "items": {"type": "string"}},
        "people_label": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "people": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"mobiles": _STR_LIST, "user_ids": _STR_LIST},
            },
        },
        "on_resolved": {"type": "boolean"},
    },
}


class MentionConfigError(ValueError):
    """A ``mentions:`` block that cannot work; the message names the key path."""


@dataclass(frozen=True)
class Person:
    mobiles: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mentions:
    """The resolved mentions of one message (deduplicated, in a stable order)."""

    mobiles: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    at_all: bool = False

    def __bool__(self) -> bool:
        return bool(self.mobiles or self.user_ids or self.at_all)

    def as_dict(self) -> dict[str, Any]:
        return {"mobiles": list(self.mobiles), "user_ids": list(self.user_ids), "at_all": self.at_all}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Mentions:
        """Read back ``as_dict()`` from ``RenderedMessage.meta["mentions"]`` (absent → none)."""
        raw = meta.get("mentions") or {}
        return cls(tuple(raw.get("mobiles", ())), tuple(raw.get("user_ids", ())), bool(raw.get("at_all", False)))


@dataclass(frozen=True)
class MentionConfig:
    mobiles: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    at_all: bool = False
    at_all_severities: frozenset[str] = frozenset()
    people_labels: tuple[str, ...] = ()
    people: Mapping[str, Person] = field(default_factory=dict)
    on_resolved: bool = False

    @property
    def uses_mobiles(self) -> bool:
        return bool(self.mobiles) or any(p.mobiles for p in self.people.values())

    @property
    def uses_user_ids(self) -> bool:
        return bool(self.user_ids) or any(p.user_ids for p in self.people.values())

    @property
    def uses_at_all(self) -> bool:
        return self.at_all or bool(self.at_all_severities)

    @classmethod
    def parse(cls, raw: Any, where: str = "mentions") -> MentionConfig:
        """Parse the ``mentions`` option (None → no mentions); raise MentionConfigError on bad shape."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise MentionConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(MENTIONS_SCHEMA["properties"]))
        if unknown:
            raise MentionConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        labels = raw.get("people_label") or ()
        if isinstance(labels, str):
            labels = (labels,)
        people: dict[str, Person] = {}
        for key, entry in (raw.get("people") or {}).items():
            if not isinstance(entry, Mapping):
                raise MentionConfigError(f"{where}.people.{key}: expected a mapping with mobiles/user_ids")
            extra = sorted(set(entry) - {"mobiles", "user_ids"})
            if extra:
                raise MentionConfigError(f"{where}.people.{key}: unknown key(s) {', '.join(extra)}")
            people[str(key)] = Person(
                _strs(entry.get("mobiles"), f"{where}.people.{key}.mobiles"),
                _strs(entry.get("user_ids"), f"{where}.people.{key}.user_ids"),
            )
        if people and not labels:
            raise MentionConfigError(f"{where}.people: set people_label to say which label names a person/team")
        return cls(
            mobiles=_strs(raw.get("mobiles"), f"{where}.mobiles"),
            user_ids=_strs(raw.get("user_ids"), f"{where}.user_ids"),
            at_all=bool(raw.get("at_all", False)),
            at_all_severities=frozenset(normalize_severity(s) for s in raw.get("at_all_severities") or ()),
            people_labels=tuple(str(x) for x in labels),
            people=people,
            on_resolved=bool(raw.get("on_resolved", False)),
        )

    def resolve(self, notifications: Sequence[Notification]) -> Mentions:
        """Mentions for a message made of ``notifications`` (one, or several for a digest)."""
        alerts = [a for n in notifications for a in n.alerts]
        firing = [a for a in alerts if a.status == "firing"]
        if not firing and not self.on_resolved:
            return Mentions()
        considered = alerts if self.on_resolved else firing
        mobiles = list(self.mobiles)
        user_ids = list(self.user_ids)
        for alert in considered:
            for label in self.people_labels:
                person = self.people.get(alert.labels.get(label, ""))
                if person:
                    mobiles.extend(person.mobiles)
                    user_ids.extend(person.user_ids)
        at_all = self.at_all or any(normalize_severity(a.severity) in self.at_all_severities for a in firing)
        return Mentions(_dedupe(mobiles), _dedupe(user_ids), at_all)


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int):
        value = [value]
    if not isinstance(value, list | tuple):
        raise MentionConfigError(f"{where}: expected a list of strings")
    out = []
    for item in value:
        text = str(item).strip()
        if not text:
            raise MentionConfigError(f"{where}: empty entry")
        out.append(text)
    return tuple(out)


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
