"""The alert plugin's pure parts: paths, patterns, templates, the rules file, settings, de-duplication."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from plugins.alert import alerts, paths, rules, settings, sinks
from watcher import errors

DEFAULT_RULES = Path(settings.DEFAULT_RULES)


def warning(
    reason: str, message: str, *, kind: str = "Pod", name: str = "web-1", count: int = 1
) -> dict[str, Any]:
    """A watch event carrying a core v1 Event as kubelet or the scheduler writes it."""
    return {
        "type": "ADDED",
        "object": {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": f"{name}.17a", "namespace": "shop", "uid": f"uid-{name}-{reason}"},
            "involvedObject": {"kind": kind, "namespace": "shop" if kind != "Node" else "", "name": name},
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": count,
            "firstTimestamp": "2024-05-01T10:00:00Z",
            "lastTimestamp": "2024-05-01T10:05:00Z",
        },
    }


def load(text: str, **kwargs: Any) -> list[rules.Rule]:
    return rules.load(text, "test.yaml", **kwargs)


def problems_of(text: str, **kwargs: Any) -> str:
    with pytest.raises(errors.PluginError) as caught:
        load(text, **kwargs)
    return str(caught.value)


RULE = """
rules:
  - name: PodNotRunning
    match:
      type: ADDED|MODIFIED
      object.type: Warning
      object.reason: BackOff|FailedScheduling
      object.involvedObject.kind: Pod
      object.metadata.namespace: prod-*
    severity: warning
    summary: "{object.reason}: pod {object.involvedObject.namespace}/{object.involvedObject.name}"
    description: "{object.message}"
"""


# --- paths ------------------------------------------------------------------------------------------


def test_paths_start_at_the_two_keys_of_a_watch_event() -> None:
    assert paths.parse("object.involvedObject.name", allow_star=False) == ("object", "involvedObject", "name")
    assert paths.parse("type", allow_star=False) == ("type",)
    with pytest.raises(paths.PathError, match="names nothing"):
        paths.parse("reason", allow_star=False)
    with pytest.raises(paths.PathError, match="no fields"):
        paths.parse("type.name", allow_star=False)
    with pytest.raises(paths.PathError, match="malformed segment"):
        paths.parse("object..reason", allow_star=False)
    with pytest.raises(paths.PathError, match="match paths only"):
        paths.parse("object.items.*.name", allow_star=False)


def test_the_event_schema_catches_typos_but_leaves_labels_free() -> None:
    schema = paths.EVENT_SCHEMA
    with pytest.raises(paths.PathError, match=r"has no field 'reasn' \(known: .*reason"):
        paths.parse("object.reasn", allow_star=True, schema=schema)
    with pytest.raises(paths.PathError, match=r"object.involvedObject has no field 'uidd'"):
        paths.parse("object.involvedObject.uidd", allow_star=True, schema=schema)
    with pytest.raises(paths.PathError, match=r"object.reason has no fields"):
        paths.parse("object.reason.text", allow_star=True, schema=schema)
    assert paths.parse("object.metadata.labels.app", allow_star=True, schema=schema)[-1] == "app"
    assert paths.parse("object.metadata.ownerReferences.0.kind", allow_star=False, schema=schema)


def test_values_follow_indexes_and_stars() -> None:
    pod = {"status": {"containerStatuses": [{"name": "a", "ready": True}, {"name": "b", "ready": False}]}}
    event = {"type": "MODIFIED", "object": pod}
    assert list(paths.values(event, ("object", "status", "containerStatuses", "*", "name"))) == ["a", "b"]
    assert paths.first(event, ("object", "status", "containerStatuses", "1", "name")) == "b"
    assert paths.first(event, ("object", "status", "containerStatuses", "2", "name")) is None
    assert paths.first(event, ("object", "spec", "nodeName")) is None
    assert paths.as_text(False) == "false" and paths.as_text(3) == "3" and paths.as_text(None) == ""


# --- conditions ---------------------------------------------------------------------------------------


def condition(path: str, pattern: Any) -> rules.Condition:
    return rules.Condition.parse(path, pattern)


def test_patterns_are_whole_value_alternatives_with_globs() -> None:
    reason = condition("object.reason", "BackOff|FailedScheduling")
    assert reason.accepts("BackOff") and reason.accepts("FailedScheduling")
    assert not reason.accepts("BackOffX") and not reason.accepts("Back") and not reason.accepts("")
    namespace = condition("object.metadata.namespace", "prod-*|stage")
    assert namespace.accepts("prod-eu") and namespace.accepts("prod-") and namespace.accepts("stage")
    assert not namespace.accepts("preprod-eu")
    message = condition("object.message", "Back-off * failed container*")
    assert message.accepts("Back-off restarting failed container app\nin pod web")  # messages span lines
    literal = condition("object.message", "a.b(c)+[d]")
    assert literal.accepts("a.b(c)+[d]") and not literal.accepts("aXb(c)+[d]")  # only * is special


def test_conditions_compare_numbers_and_booleans_by_their_json_text() -> None:
    assert condition("object.count", 3).holds({"object": {"count": 3}})
    assert condition("object.count", "1*").holds({"object": {"count": 12}})
    assert condition("object.spec.unschedulable", True).holds({"object": {"spec": {"unschedulable": True}}})
    assert not condition("object.reason", "*").holds({"object": {}})  # missing never matches, even *


def test_a_star_in_a_path_matches_when_any_element_does() -> None:
    oom = condition("object.status.containerStatuses.*.*.terminated.reason", "OOMKilled")
    running = {"state": {"running": {}}, "lastState": {}}
    killed = {"state": {"running": {}}, "lastState": {"terminated": {"reason": "OOMKilled"}}}
    assert oom.holds({"object": {"status": {"containerStatuses": [running, killed]}}})
    assert not oom.holds({"object": {"status": {"containerStatuses": [running]}}})


def test_bad_patterns_are_refused() -> None:
    with pytest.raises(rules.RuleError, match="empty alternative"):
        condition("object.reason", "BackOff|")
    with pytest.raises(rules.RuleError, match="needs a string pattern, not nothing"):
        condition("object.reason", None)
    with pytest.raises(rules.RuleError, match="type CREATED is not one of ADDED, MODIFIED, DELETED"):
        condition("type", "ADDED|CREATED")


# --- templates ----------------------------------------------------------------------------------------


def test_templates_render_dotted_fields_and_literal_braces() -> None:
    template = rules.Template.parse("{object.reason} on {object.involvedObject.name} x{object.count} {{raw}}")
    assert template.render(warning("BackOff", "m", count=4)) == "BackOff on web-1 x4 {raw}"
    assert rules.Template.parse("[{object.series.count}]").render(warning("BackOff", "m")) == "[]"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{object.reason", "is not closed"),
        ("{object.{reason}}", "is not closed"),
        ("reason}", "lone '}'"),
        ("pod {}", "empty placeholder"),
        ("{object.count:>4}", "format specs"),
        ("{object.reason!r}", "format specs"),
        ("{reason}", "names nothing"),
        ("{object.involvedObject.*}", "match paths only"),
    ],
)
def test_bad_templates_are_refused(text: str, problem: str) -> None:
    with pytest.raises(rules.RuleError, match=problem):
        rules.Template.parse(text)


def test_long_renderings_are_cut() -> None:
    long = rules.Template.parse("{object.message}").render(warning("Failed", "x" * 10000))
    assert len(long) == rules.MAX_ANNOTATION and long.endswith("…")


# --- the rules file -----------------------------------------------------------------------------------


def test_the_issue_example_parses_and_matches() -> None:
    (rule,) = load(RULE, kind="Event", schema=paths.EVENT_SCHEMA)
    event = warning("BackOff", "Back-off restarting failed container")
    event["object"]["metadata"]["namespace"] = "prod-eu"
    assert rule.matches(event)
    assert rule.annotations(event) == {
        "summary": "BackOff: pod shop/web-1",
        "description": event["object"]["message"],
    }
    event["object"]["metadata"]["namespace"] = "dev"
    assert not rule.matches(event)


def test_without_a_type_a_rule_ignores_deletions() -> None:
    (rule,) = load(RULE.replace("      type: ADDED|MODIFIED\n", ""))
    event = warning("BackOff", "m")
    event["object"]["metadata"]["namespace"] = "prod-eu"
    assert rule.matches({**event, "type": "MODIFIED"})
    assert not rule.matches({**event, "type": "DELETED"})
    assert rule.matches_object({**event, "type": "DELETED"})


def test_problems_name_the_file_the_rule_and_what_is_wrong_all_at_once() -> None:
    text = """
rules:
  - name: Typo
    match: {object.reason: BackOff}
    severity: warning
    summary: s
    sevrity: critical
  - name: NoSummary
    match: {object.reason: BackOff}
    severity: warning
  - name: BadTemplate
    match: {object.reason: BackOff}
    severity: warning
    summary: "{object.reasn}"
  - name: BadPath
    match: {reason: BackOff}
    severity: warning
    summary: s
  - name: Typo
    match: {object.reason: BackOff}
    severity: warning
    summary: s
"""
    message = problems_of(text, kind="Event", schema=paths.EVENT_SCHEMA)
    assert "rules_file test.yaml: rule 'Typo' (#1): unknown key 'sevrity'" in message
    assert "rule 'NoSummary' (#2): missing summary" in message
    assert "rule 'BadTemplate' (#3): summary: 'object.reasn' names nothing" in message
    assert "rule 'BadPath' (#4): match: 'reason' names nothing" in message
    assert "rule 'Typo' (#5): the name is used by an earlier rule" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rules: [\n  {name: x\n", "bad YAML at line 3"),
        ("rules: []\nrules: []\n", "bad YAML at line 2, column 1: duplicate key 'rules'"),
        ("- name: x\n", "must be a mapping with the one key 'rules'"),
        ("rules: []\n", "non-empty list"),
        ("rules:\n  - just text\n", "rule #1: must be a mapping, not a string"),
        ("rules:\n  - {name: 'a b', match: {type: ADDED}, severity: x, summary: s}\n", "name must be"),
        ("rules:\n  - {name: a, match: {}, severity: x, summary: s}\n", "match must be a non-empty mapping"),
        ("rules:\n  - {name: a, match: {type: ADDED}, severity: '', summary: s}\n", "severity must be"),
        (
            "rules:\n  - {name: a, match: {type: ADDED}, severity: x, summary: '  '}\n",
            "summary: must not be empty",
        ),
        (
            "rules:\n  - {name: a, match: {type: ADDED}, severity: x, summary: s, labels: {team-x: a}}\n",
            "valid label",
        ),
        (
            "rules:\n  - {name: a, match: {type: ADDED}, severity: x, summary: s, labels: {name: a}}\n",
            "overridden",
        ),
        (
            "rules:\n  - {name: a, match: {type: ADDED}, severity: x, summary: s, labels: {team: ''}}\n",
            "non-empty",
        ),
    ],
)
def test_bad_rules_files_are_refused(text: str, problem: str) -> None:
    assert problem in problems_of(text)


def test_a_missing_rules_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(errors.PluginError, match=r"rules_file .*/nope.yaml: cannot read it: No such file"):
        rules.load_file(str(tmp_path / "nope.yaml"))


def test_rules_for_other_kinds_skip_the_event_schema_and_are_inactive() -> None:
    text = """
rules:
  - name: PodOOM
    match:
      object.kind: Pod
      object.status.containerStatuses.*.lastState.terminated.reason: OOMKilled
    severity: warning
    summary: "{object.metadata.name}"
"""
    (rule,) = load(text, kind="Event", schema=paths.EVENT_SCHEMA)
    assert not rule.accepts_kind("Event") and rule.accepts_kind("Pod")
    # The same path in a rule that can match Events is a typo as far as the Event schema knows.
    assert "has no field 'status'" in problems_of(
        text.replace("object.kind: Pod", "object.kind: Event|Pod"), kind="Event", schema=paths.EVENT_SCHEMA
    )


def test_static_labels_are_sorted_into_the_rule() -> None:
    (rule,) = load(
        RULE.replace("    severity: warning", "    severity: warning\n    labels: {team: shop, area: web}")
    )
    assert rule.labels == (("area", "web"), ("team", "shop"))


# --- the default rules --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_rules() -> list[rules.Rule]:
    return rules.load_file(str(DEFAULT_RULES), kind="Event", schema=paths.EVENT_SCHEMA)


def fired(rule_set: list[rules.Rule], event: dict[str, Any]) -> list[str]:
    return [rule.name for rule in rule_set if rule.matches(event)]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            warning("BackOff", "Back-off restarting failed container app in pod web-1_shop(0b1c)"),
            ["PodCrashLooping"],
        ),
        (
            warning("Failed", 'Failed to pull image "nginx:nope": rpc error: code = NotFound'),
            ["PodImagePullFailing"],
        ),
        (warning("Failed", "Error: ErrImagePull"), ["PodImagePullFailing"]),
        (warning("Failed", "Error: ImagePullBackOff"), ["PodImagePullFailing"]),
        (warning("BackOff", 'Back-off pulling image "nginx:nope"'), ["PodImagePullFailing"]),
        (
            warning("ErrImageNeverPull", 'Container image "x" is not present with pull policy of Never'),
            ["PodImagePullFailing"],
        ),
        (warning("Failed", "Error: CreateContainerConfigError"), []),
        (warning("FailedScheduling", "0/3 nodes are available: 3 Insufficient cpu."), ["PodUnschedulable"]),
        (
            warning("OOMKilling", "Memory cgroup out of memory: Killed process 4242", kind="Node", name="n1"),
            ["OOMKilled"],
        ),
        (
            warning("SystemOOM", "System OOM encountered, victim process: java", kind="Node", name="n1"),
            ["OOMKilled"],
        ),
        (warning("FailedMount", 'MountVolume.SetUp failed for volume "cfg"'), ["PodVolumeFailing"]),
        (
            warning("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500"),
            ["ContainerProbeFailing"],
        ),
        (warning("Unhealthy", "Readiness probe failed: connection refused"), []),
        (warning("Evicted", "The node was low on resource: memory."), ["PodEvicted"]),
        (warning("FailedCreate", "exceeded quota: compute", kind="ReplicaSet"), ["WorkloadCannotCreatePods"]),
        (
            warning("BackoffLimitExceeded", "Job has reached the specified backoff limit", kind="Job"),
            ["JobFailed"],
        ),
    ],
)
def test_default_rules_cover_the_common_cases(
    default_rules: list[rules.Rule], event: dict[str, Any], expected: list[str]
) -> None:
    assert fired(default_rules, event) == expected


def test_default_rules_leave_normal_events_alone_except_node_not_ready(
    default_rules: list[rules.Rule],
) -> None:
    for reason, message in (
        ("Pulled", "Successfully pulled image"),
        ("Scheduled", "Successfully assigned"),
        ("Started", "Started container app"),
    ):
        event = warning(reason, message)
        event["object"]["type"] = "Normal"
        assert fired(default_rules, event) == []
    node = warning("NodeNotReady", "Node n1 status is now: NodeNotReady", kind="Node", name="n1")
    node["object"]["type"] = "Normal"  # the node controller writes it as Normal
    assert fired(default_rules, node) == ["NodeNotReady"]


def test_the_default_pod_rule_sees_oom_killed_containers() -> None:
    rule_set = rules.load_file(str(DEFAULT_RULES), kind="Pod")
    pod = {
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop"},
        "status": {
            "containerStatuses": [
                {
                    "name": "app",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                }
            ]
        },
    }
    event = {"type": "MODIFIED", "object": pod}
    active = [rule for rule in rule_set if rule.accepts_kind("Pod")]
    assert fired(active, event) == ["PodContainerOOMKilled"]
    assert active[0].annotations(event)["description"] == "Its first container has restarted 3 times."


# --- settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("300", 300),
        ("1.5", 1.5),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert settings.parse_duration(text, "repeat_interval") == seconds


@pytest.mark.parametrize("text", ["", "abc", "0", "0s", "-5", "5x", "1h 30m", "h", "inf", "nan"])
def test_bad_durations_name_the_key(text: str) -> None:
    with pytest.raises(ValueError, match=r"^repeat_interval: "):
        settings.parse_duration(text, "repeat_interval")


def secret_file(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content + "\n")
    return str(path)


def test_settings_defaults_and_the_alertmanager_path() -> None:
    options = settings.load({"alertmanager_url": "http://am.example.test:9093/"})
    assert options.rules_file == settings.DEFAULT_RULES and options.repeat_interval == 3600
    assert options.alertmanager == settings.Endpoint(url="http://am.example.test:9093/api/v2/alerts")
    assert options.webhook is None and options.webhook_format == "json"


def test_per_sink_keys_override_the_shared_ones(tmp_path: Path) -> None:
    token = secret_file(tmp_path, "token", "t0ken")
    password = secret_file(tmp_path, "password", "pw")
    options = settings.load(
        {
            "alertmanager_url": "https://am.example.test",
            "webhook_url": "https://hooks.example.test/services/T0/B0/secret",
            "bearer_token_file": token,
            "timeout": "5s",
            "webhook_bearer_token_file": "none",
            "webhook_basic_auth_user": "bot",
            "webhook_basic_auth_password_file": password,
            "webhook_retries": "0",
        }
    )
    assert options.alertmanager is not None and options.webhook is not None
    assert options.alertmanager.bearer_token_file == token and options.alertmanager.timeout == 5
    assert options.webhook.bearer_token_file is None and options.webhook.basic_auth_user == "bot"
    assert options.webhook.timeout == 5 and options.webhook.retries == 0 and options.alertmanager.retries == 2
    assert "bot" not in repr(options.webhook)


def test_the_webhook_url_can_come_from_a_file(tmp_path: Path) -> None:
    url_file = secret_file(tmp_path, "url", "https://hooks.example.test/services/T0/B0/secret")
    options = settings.load({"webhook_url_file": url_file, "webhook_format": "Slack"})
    assert options.webhook is not None and options.webhook.url.endswith("/secret")
    assert options.webhook.display == "https://hooks.example.test" and options.webhook_format == "slack"


def test_every_settings_problem_is_reported_at_once(tmp_path: Path) -> None:
    empty = secret_file(tmp_path, "empty", "")
    with pytest.raises(errors.PluginError) as caught:
        settings.load(
            {
                "alertmanager_url": "ftp://am",
                "webhook_url": "https://hooks.example.test/x",
                "alertmanger_url": "http://typo",
                "repeat_interval": "soon",
                "webhook_format": "teams",
                "bearer_token_file": str(tmp_path / "missing"),
                "basic_auth_user": "u",
                "webhook_basic_auth_password_file": empty,
                "retries": "many",
                "timeout": "0",
            }
        )
    message = str(caught.value)
    for expected in (
        "repeat_interval: expected a duration such as 90s, 15m, 1h, 30d or plain seconds, got 'soon'",
        "webhook_format: 'teams' is not one of json, slack",
        "alertmanager_url: must be an http:// or https:// URL",
        f"bearer_token_file: {tmp_path / 'missing'} is not a file",
        f"webhook_basic_auth_password_file: {empty} is empty",
        "webhook: bearer_token_file and basic auth exclude each other",
        "retries: 'many' must be a whole number from 0 to 10",
        "timeout: '0' must be more than zero",
    ):
        assert expected in message
    assert all(part.startswith("[plugin_alert] ") for part in message.split("; "))


def test_a_sink_is_required() -> None:
    with pytest.raises(errors.PluginError, match="set alertmanager_url or webhook_url"):
        settings.load({"repeat_interval": "1h"})


def test_urls_are_shown_without_path_or_credentials() -> None:
    assert (
        settings.display_url("https://u:p@hooks.example.test/services/T/B/secret?x=1")
        == "https://hooks.example.test"
    )
    assert settings.display_url("http://127.0.0.1:9093/api/v2/alerts") == "http://127.0.0.1:9093"


# --- de-duplication -----------------------------------------------------------------------------------

WALL = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
SUBJECT = alerts.Subject("Pod", "shop", "web-1")


def candidate(
    count: int | None = 1, description: str = "seen 1 times", source: str = "event-1", rule: str = "R"
) -> alerts.Candidate:
    return alerts.Candidate(
        rule=rule,
        subject=SUBJECT,
        labels=alerts.subject_labels(rule, "warning", SUBJECT),
        annotations=(("description", description), ("summary", "web-1 is crash-looping")),
        source=source,
        count=count,
        first_seen=WALL - dt.timedelta(minutes=5),
        generator_url="",
    )


def observe(tracker: alerts.Tracker, item: alerts.Candidate, now: float, commit: bool = True) -> str | None:
    decision = tracker.observe(item, now, WALL + dt.timedelta(seconds=now))
    if decision is None:
        return None
    if commit:
        tracker.sent(decision[0], now)
    return decision[1]


def test_one_key_is_not_resent_within_the_repeat_interval() -> None:
    tracker = alerts.Tracker(repeat_interval=600)
    assert observe(tracker, candidate(), 0) == "new"
    assert observe(tracker, candidate(), 10) is None
    assert observe(tracker, candidate(source="event-2"), 20) is None  # another Event about the same pod
    assert observe(tracker, candidate(), 599) is None
    assert observe(tracker, candidate(), 600) == "repeat"
    assert observe(tracker, candidate(), 700) is None


def test_a_growing_count_updates_the_alert_with_the_same_labels() -> None:
    tracker = alerts.Tracker(repeat_interval=600)
    first = tracker.observe(candidate(), 0, WALL)
    assert first is not None
    tracker.sent(first[0], 0)
    update = tracker.observe(candidate(count=5, description="seen 5 times"), 30, WALL)
    assert update is not None and update[1] == "update"
    assert update[0].labels == first[0].labels and update[0].annotation("description") == "seen 5 times"
    assert update[0].starts_at == WALL - dt.timedelta(minutes=5)  # the Event's firstTimestamp
    assert update[0].ends_at == WALL + dt.timedelta(seconds=1200)  # twice the repeat interval
    tracker.sent(update[0], 30)
    assert observe(tracker, candidate(count=5, description="seen 5 times"), 40) is None  # same count
    assert observe(tracker, candidate(count=6, description="seen 5 times"), 50) is None  # nothing new to say


def test_a_send_that_failed_is_tried_again_on_the_next_delivery() -> None:
    tracker = alerts.Tracker(repeat_interval=600)
    assert observe(tracker, candidate(), 0, commit=False) == "new"
    assert observe(tracker, candidate(), 5) == "new"
    assert observe(tracker, candidate(), 6) is None


def test_deleting_the_last_source_resolves_the_alert() -> None:
    tracker = alerts.Tracker(repeat_interval=600)
    observe(tracker, candidate(source="event-1"), 0)
    observe(tracker, candidate(source="event-2"), 1)
    assert tracker.release("event-1", WALL) == []  # event-2 still keeps it up
    (resolved,) = tracker.release("event-2", WALL + dt.timedelta(seconds=90))
    assert resolved.resolved and resolved.status == "resolved"
    assert resolved.ends_at == WALL + dt.timedelta(seconds=90) and resolved.label("alertname") == "R"
    assert len(tracker) == 0
    assert observe(tracker, candidate(), 100) == "new"  # it can fire again afterwards


def test_release_can_be_limited_to_rules_and_forgets_unsent_alerts() -> None:
    tracker = alerts.Tracker(repeat_interval=600)
    observe(tracker, candidate(rule="A"), 0)
    observe(tracker, candidate(rule="B"), 0, commit=False)
    assert tracker.release("event-1", WALL, rules=["C"]) == []
    assert tracker.release("event-1", WALL, rules=["B"]) == []  # never sent: nothing to resolve
    (resolved,) = tracker.release("event-1", WALL, rules=["A", "B"])
    assert resolved.label("alertname") == "A"


def test_old_entries_are_forgotten_once_their_alert_has_lapsed() -> None:
    tracker = alerts.Tracker(repeat_interval=60)
    observe(tracker, candidate(source="old"), 0)
    observe(tracker, candidate(rule="Other", source="new"), 100)
    assert len(tracker) == 2
    observe(tracker, candidate(rule="Other", source="new"), 200)  # 200 s > 2 * 60 s since "old" was seen
    assert len(tracker) == 1
    assert tracker.release("old", WALL) == []


def test_alert_identity_comes_from_the_involved_object() -> None:
    event = warning("BackOff", "m")["object"]
    assert alerts.is_event(event) and alerts.subject_of(event) == SUBJECT
    assert alerts.count_of({**event, "count": None, "series": {"count": 7}}) == 7
    assert alerts.first_seen_of(event) == dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone.utc)
    node_event = warning("NodeNotReady", "m", kind="Node", name="n1")["object"]
    assert dict(alerts.subject_labels("N", "critical", alerts.subject_of(node_event))) == {
        "alertname": "N",
        "severity": "critical",
        "kind": "Node",
        "name": "n1",
    }
    route = {"kind": "Route", "metadata": {"name": "web", "namespace": "demo", "uid": "u1"}, "spec": {}}
    assert str(alerts.subject_of(route)) == "Route demo/web" and alerts.source_of(route) == "u1"
    assert alerts.count_of(route) is None


# --- payloads -----------------------------------------------------------------------------------------


def test_payload_shapes() -> None:
    firing = alerts.Alert(
        alerts.subject_labels("R", "warning", SUBJECT),
        (("description", "d"), ("summary", "s")),
        WALL,
        WALL,
        "https://x/y",
    )
    resolved = alerts.Alert(firing.labels, firing.annotations, WALL, WALL, "", resolved=True)
    assert sinks.alertmanager_body([firing]) == [
        {
            "labels": {
                "alertname": "R",
                "severity": "warning",
                "kind": "Pod",
                "namespace": "shop",
                "name": "web-1",
            },
            "annotations": {"summary": "s", "description": "d"},
            "startsAt": "2024-05-01T12:00:00.000Z",
            "endsAt": "2024-05-01T12:00:00.000Z",
            "generatorURL": "https://x/y",
        }
    ]
    body = sinks.json_body([resolved])
    assert (
        body["status"] == "resolved" and body["alerts"][0]["status"] == "resolved" and body["version"] == "1"
    )
    assert "generatorURL" not in body["alerts"][0]
    assert sinks.slack_body([firing, resolved]) == {"text": "[FIRING:warning] R: s\n>d\n[RESOLVED] R: s"}


# --- the README ---------------------------------------------------------------------------------------

README = (DEFAULT_RULES.parent / "README.md").read_text(encoding="utf-8")


def test_every_key_is_documented() -> None:
    for key in settings.TOP_KEYS + settings.CONNECTION_KEYS:
        assert f"| `{key}` |" in README, key


def test_the_rule_sets_in_the_readme_are_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)
    assert len(blocks) == 2
    for block in blocks:
        assert load(block, kind="Event", schema=paths.EVENT_SCHEMA)
