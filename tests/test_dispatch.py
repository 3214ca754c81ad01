"""Plugin loading and the contract: found where documented, refused cleanly when broken."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from tests.harness import TEST_PLUGINS, change, handle_all
from watcher import config, dispatch, errors
from watcher.metrics import Metrics


def settings(tmp_path: Path, plugins: str, plugin_path: str = TEST_PLUGINS, ini: str = "") -> config.Settings:
    ini_path = tmp_path / "config.ini"
    ini_path.write_text("[global]\n" + ini)
    environ = {
        "K8S_API_ENDPOINT": "127.0.0.1:6443",
        "K8S_TOKEN": "test-token-value",
        "K8S_NAMESPACE": "default",
        "K8S_RESOURCE": "routes",
        "WATCHER_PLUGIN": plugins,
        "WATCHER_PLUGIN_PATH": plugin_path,
    }
    return config.load(environ, str(ini_path), serviceaccount_dir=str(tmp_path / "no-sa"), home=str(tmp_path))


def test_builtin_plugin_loads_from_the_checkout(tmp_path: Path) -> None:
    (plugin,) = dispatch.load(settings(tmp_path, "simple"))
    assert plugin.origin.endswith(os.path.join("plugins", "simple"))


def test_plugin_path_is_searched_before_the_builtins(tmp_path: Path) -> None:
    override = tmp_path / "mine" / "simple"
    override.mkdir(parents=True)
    (override / "__init__.py").write_text(
        "def handle_event(watcher, event, config):\n    return 'mine', 'INFO'\n"
    )
    (plugin,) = dispatch.load(settings(tmp_path, "simple", plugin_path=str(tmp_path / "mine")))
    assert plugin.origin == str(override)


def test_seed_directory_names_resolve(tmp_path: Path) -> None:
    seed = tmp_path / "mine" / "plugin_legacy"
    seed.mkdir(parents=True)
    (seed / "__init__.py").write_text("def handle_event(watcher, event, config):\n    return None\n")
    (plugin,) = dispatch.load(settings(tmp_path, "legacy", plugin_path=str(tmp_path / "mine")))
    assert plugin.origin == str(seed)


def test_relative_imports_inside_a_plugin_work(tmp_path: Path) -> None:
    pkg = tmp_path / "mine" / "multi"
    pkg.mkdir(parents=True)
    (pkg / "helpers.py").write_text("GREETING = 'hello'\n")
    (pkg / "__init__.py").write_text(
        "from . import helpers\n\n"
        "def handle_event(watcher, event, config):\n    return helpers.GREETING, 'INFO'\n"
    )
    (plugin,) = dispatch.load(settings(tmp_path, "multi", plugin_path=str(tmp_path / "mine")))
    assert plugin.handle(None, {}, {}) == ("hello", "INFO")


def test_installed_entry_point_plugin_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution's ``event_watcher.plugins`` entry point is found (the lookup API differs per Python)."""
    site = tmp_path / "site"
    (site / "ew_entry_point_demo").mkdir(parents=True)
    (site / "ew_entry_point_demo" / "__init__.py").write_text(
        "def handle_event(watcher, event, config):\n    return 'from entry point', 'INFO'\n"
    )
    dist_info = site / "ew_entry_point_demo-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ew-entry-point-demo\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{dispatch.ENTRY_POINT_GROUP}]\nepdemo = ew_entry_point_demo\n"
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        (plugin,) = dispatch.load(settings(tmp_path, "epdemo"))
        assert plugin.origin == "entry point ew_entry_point_demo"
        assert plugin.handle(None, {}, {}) == ("from entry point", "INFO")
    finally:
        sys.modules.pop("ew_entry_point_demo", None)


def test_missing_plugin_lists_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(errors.PluginError) as caught:
        dispatch.load(settings(tmp_path, "nosuch"))
    message = str(caught.value)
    assert caught.value.exit_code == errors.EXIT_PLUGIN
    assert "'nosuch' not found" in message
    assert os.path.join(TEST_PLUGINS, "nosuch") in message and "plugin_nosuch" in message
    assert "entry points" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("broken_no_handler", "has no callable handle_event"),
        ("broken_signature", "cannot be called as handle_event(watcher, event, config)"),
    ],
)
def test_contract_is_checked_at_load_time(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(errors.PluginError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        dispatch.load(settings(tmp_path, name))


def test_a_plugin_that_fails_to_import_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "mine" / "syntax"
    bad.mkdir(parents=True)
    (bad / "__init__.py").write_text("def handle_event(:\n")
    with pytest.raises(errors.PluginError, match=r"'syntax' failed to import .* SyntaxError"):
        dispatch.load(settings(tmp_path, "syntax", plugin_path=str(tmp_path / "mine")))


def test_init_refusal_names_the_plugin(tmp_path: Path) -> None:
    s = settings(tmp_path, "refuses_init")
    with pytest.raises(errors.PluginError, match="plugin 'refuses_init' refused to start: api_url: required"):
        dispatch.start(dispatch.load(s), s, None)


def test_one_plugin_failing_does_not_stop_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    s = settings(tmp_path, "record,simple", ini="")
    plugins = dispatch.load(s)
    plugins[0].config = {"fail_on": "bad", "fail_times": "1"}
    metrics = Metrics()
    routes = [
        {"kind": "Route", "metadata": {"name": n, "namespace": "ns", "resourceVersion": "1"}}
        for n in ("bad", "good")
    ]
    handle_all(plugins, s, [change("ADDED", r) for r in routes], metrics)
    record = plugins[0].module
    assert sorted(e.name for e in record.events) == ["bad", "bad", "good"]  # bad: failed, then retried
    logged = sorted(r.getMessage() for r in caplog.records if r.name == "plugins.simple")
    assert logged == [
        "Kind: Route; Name: bad; Event Type: ADDED",
        "Kind: Route; Name: good; Event Type: ADDED",
    ]
    sample = metrics.registry.get_sample_value
    assert sample("event_watcher_events_failed_total", {"plugin": "record"}) == 1
    assert sample("event_watcher_events_handled_total", {"plugin": "record"}) == 2
    assert sample("event_watcher_events_handled_total", {"plugin": "simple"}) == 2
    assert record.closed.is_set()


def test_the_core_keeps_its_keys_and_the_plugin_gets_the_rest(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        "record",
        ini="[plugin_record]\nworkers = 3\nretry_max = 2m\nstuck_after = 90s\nfail_on = x\n",
    )
    (plugin,) = dispatch.load(s)
    assert plugin.work == dispatch.WorkSettings(workers=3, retry_max=120.0, stuck_after=90.0)
    assert dict(plugin.config) == {"fail_on": "x"}


def test_a_bad_core_key_is_a_configuration_error(tmp_path: Path) -> None:
    s = settings(tmp_path, "record", ini="[plugin_record]\nworkers = 0\nretry_max = soon\n")
    with pytest.raises(errors.ConfigError) as raised:
        dispatch.load(s)
    assert raised.value.exit_code == errors.EXIT_USAGE
    assert str(raised.value) == (
        "[plugin_record] workers: expected a whole number >= 1, got '0'; [plugin_record] retry_max: "
        "expected a duration such as 90s, 15m, 1h, 30d or plain seconds, got 'soon'"
    )


def test_simple_plugin_honours_its_log_level(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = settings(tmp_path, "simple")
    (plugin,) = dispatch.load(s)
    plugin.config = {"message_log_level": "debug"}
    caplog.set_level(logging.DEBUG)
    service = {"kind": "Service", "metadata": {"name": "x", "resourceVersion": "3"}}
    handle_all([plugin], s, [change("DELETED", service)], Metrics())
    (record,) = [r for r in caplog.records if r.name == "plugins.simple"]
    assert (
        record.levelno == logging.DEBUG
        and record.getMessage() == "Kind: Service; Name: x; Event Type: DELETED"
    )


def test_a_typo_in_a_plugin_key_is_named_with_its_likely_spelling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path, "simple", ini="[plugin_simple]\nmessage_log_levl = DEBUG\nworkers = 2\n")
    (plugin,) = dispatch.load(s)
    expected = "unknown key message_log_levl in [plugin_simple] (did you mean message_log_level?)"
    assert plugin.notes == (expected,)
    assert f"Ignoring {expected}." in [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_plugin_that_declares_no_keys_gets_no_typo_warnings(tmp_path: Path) -> None:
    (plugin,) = dispatch.load(settings(tmp_path, "record", ini="[plugin_record]\nanything = x\n"))
    assert plugin.notes == ()


def test_the_typo_comes_before_the_missing_key_it_causes(tmp_path: Path) -> None:
    s = settings(tmp_path, "alert", ini="[plugin_alert]\nwebhook_uri = http://127.0.0.1:9/\n")
    with pytest.raises(errors.PluginError) as raised:
        dispatch.start(dispatch.load(s), s, None)
    message = str(raised.value)
    hint = "unknown key webhook_uri in [plugin_alert] (did you mean webhook_url?)"
    assert message.startswith(f"plugin 'alert' refused to start: {hint}; "), message
    assert "webhook_url" in message[len("plugin 'alert' refused to start: ") + len(hint) :], message
