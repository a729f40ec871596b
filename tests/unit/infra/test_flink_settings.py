"""The Flink launcher without a cluster: settings and their validation, the generated config, the venv, the argv.

Nothing here starts a JVM. A few tests read the Flink venv's PyFlink distribution (its shipped config.yaml, its
scripts), which `make test` creates first (`make flink-venv`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fraudlab import config
from fraudlab.exceptions import FraudlabError, InvalidParameterError, MissingToolError
from fraudlab.infra.flink import (
    DEFAULT_FLINK_VENV,
    FlinkError,
    FlinkSettings,
    FlinkStatus,
    _flat_mappings,
    _write_conf,
    cluster_config,
    flink_home,
    flink_python,
    submit_command,
)


def test_defaults_come_from_config_and_live_in_the_cache(tmp_path):
    """Port, host, slots and connector are config's; state is <cache>/flink/cluster-<port>, the jar beside it."""
    # Run
    settings = FlinkSettings(cache_dir=tmp_path)

    # Assert
    assert (settings.rest_port, settings.host, settings.task_slots) == (
        config.FLINK_REST_PORT, config.FLINK_HOST, config.FLINK_TASK_SLOTS)
    assert settings.rpc_port is None
    assert settings.state == tmp_path / "flink" / f"cluster-{config.FLINK_REST_PORT}"
    assert settings.conf_dir == settings.state / "conf" and settings.log_dir == settings.state / "log"
    assert settings.connector_jar == (
        tmp_path / "flink" / "connectors" / f"flink-sql-connector-kafka-{config.FLINK_KAFKA_CONNECTOR}.jar")
    assert settings.rest_url == f"http://127.0.0.1:{config.FLINK_REST_PORT}"
    assert settings.ui_url == settings.rest_url + "/"
    assert settings.jobmanager_address == f"127.0.0.1:{config.FLINK_REST_PORT}"


def test_the_default_venv_is_the_one_make_creates_at_the_repository_root(repo_root):
    assert repo_root / config.FLINK_VENV == DEFAULT_FLINK_VENV
    assert FlinkSettings().flink_venv == DEFAULT_FLINK_VENV
    assert FlinkSettings(venv=Path("/opt/flink-venv")).flink_venv == Path("/opt/flink-venv")


def test_an_explicit_state_dir_wins_over_the_cache(tmp_path):
    settings = FlinkSettings(rest_port=18081, state_dir=tmp_path / "elsewhere", cache_dir=tmp_path / "cache")
    assert settings.state == tmp_path / "elsewhere"
    assert settings.connector_jar.parent == tmp_path / "cache" / "flink" / "connectors"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"rest_port": 0}, "Invalid rest_port 0: choose a TCP port between 1 and 65535"),
    ({"rest_port": 70000}, "Invalid rest_port 70000"),
    ({"rpc_port": -1}, "Invalid rpc_port -1"),
    ({"rest_port": 18081, "rpc_port": 18081}, "rest_port and rpc_port are both 18081"),
    ({"task_slots": 0}, "Invalid task_slots 0: give each TaskManager at least 1 slot"),
    ({"task_slots": True}, "Invalid task_slots True"),
    ({"host": "local host"}, "Invalid host 'local host'"),
    ({"jobmanager_memory": "lots"}, "Invalid jobmanager_memory 'lots': use a memory size such as '1g'"),
    ({"jobmanager_memory": "512m"}, "Invalid jobmanager_memory '512m': Flink's memory model needs at least 640m"),
    ({"taskmanager_memory": "900m"}, "Invalid taskmanager_memory '900m': Flink's memory model needs at least 1g"),
    ({"connector_version": "5.0 beta"}, "Invalid connector_version '5.0 beta'"),
])
def test_a_bad_setting_is_named_with_its_value(overrides, message):
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        FlinkSettings(**overrides)


def test_every_bad_setting_is_reported_at_once_as_a_fraudlab_value_error():
    with pytest.raises(InvalidParameterError) as raised:
        FlinkSettings(rest_port=0, task_slots=0, taskmanager_memory="1x")
    assert isinstance(raised.value, FraudlabError) and isinstance(raised.value, ValueError)
    assert all(name in str(raised.value) for name in ("rest_port", "task_slots", "taskmanager_memory"))


@pytest.mark.parametrize("size", ["640m", "1g", "1536m", "2 GB", "2G", "1048576k"])
def test_memory_sizes_in_flink_notation_are_accepted(size):
    FlinkSettings(jobmanager_memory=size, taskmanager_memory=size if size != "640m" else "1g")


def test_the_generated_config_binds_loopback_and_recovers_from_a_lost_taskmanager(tmp_path):
    """Addresses, ports, slots, memory, Python from the Flink venv, short heartbeats, fixed-delay restarts."""
    # Setup
    settings = FlinkSettings(rest_port=18081, task_slots=3, cache_dir=tmp_path, venv=tmp_path / "venv")

    # Run
    flat = cluster_config(settings, rpc_port=16123)

    # Assert
    for key in ("jobmanager.rpc.address", "jobmanager.bind-host", "taskmanager.host", "taskmanager.bind-host",
                "rest.address", "rest.bind-address"):
        assert flat[key] == "127.0.0.1", key
    assert (flat["rest.port"], flat["jobmanager.rpc.port"], flat["taskmanager.numberOfTaskSlots"]) == (
        "18081", "16123", "3")
    assert flat["jobmanager.memory.process.size"] == "1g" and flat["taskmanager.memory.process.size"] == "2g"
    assert flat["python.executable"] == flat["python.client.executable"] == str(tmp_path / "venv" / "bin" / "python")
    assert (flat["heartbeat.interval"], flat["heartbeat.timeout"]) == ("1000", "5000")
    assert flat["restart-strategy.type"] == "fixed-delay"
    assert int(flat["restart-strategy.fixed-delay.attempts"]) >= 3
    assert flat["restart-strategy.fixed-delay.delay"] == "1 s"
    assert flat["execution.checkpointing.dir"] == settings.checkpoint_dir.as_uri()
    assert flat["env.log.dir"] == str(settings.log_dir) and flat["io.tmp.dirs"] == str(settings.tmp_dir)


def test_fraudlabs_keys_win_over_the_distributions_defaults_which_are_kept():
    flat = cluster_config(FlinkSettings(), rpc_port=16123,
                          defaults={"rest.address": "localhost", "env.java.opts.all": "--add-opens=x"})
    assert flat["rest.address"] == "127.0.0.1" and flat["env.java.opts.all"] == "--add-opens=x"


def test_the_shipped_yaml_shape_is_flattened():
    text = """# a comment
env:
  java:
    opts:
      all: --add-opens=java.base/java.lang=ALL-UNNAMED   # trailing comment
jobmanager:
  rpc:
    address: localhost
    port: 6123
  # bind-host: 0.0.0.0
  execution:
    failover-strategy: 'region'
parallelism:
  default: 1
"""
    assert _flat_mappings(text) == {
        "env.java.opts.all": "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "jobmanager.rpc.address": "localhost", "jobmanager.rpc.port": "6123",
        "jobmanager.execution.failover-strategy": "region", "parallelism.default": "1",
    }


def test_the_written_config_is_yaml_with_the_jvm_flags_java_17_needs(tmp_path):
    """The file Flink reads parses as YAML to the same keys, and keeps the distribution's --add-opens flags."""
    # Setup
    settings = FlinkSettings(rest_port=18081, cache_dir=tmp_path)

    # Run
    _write_conf(settings, flink_home(settings), 16123)

    # Assert
    loaded = yaml.safe_load((settings.conf_dir / "config.yaml").read_text())
    assert loaded["rest.port"] == "18081" and loaded["jobmanager.rpc.port"] == "16123"
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in loaded["env.java.opts.all"]
    assert (settings.conf_dir / "log4j-console.properties").is_file()
    assert (settings.conf_dir / "log4j-cli.properties").is_file()


def test_the_flink_venv_holds_the_pinned_distribution():
    home = flink_home()
    assert home.name == "pyflink" and home.parent.name == "site-packages"
    assert all((home / "bin" / script).is_file() for script in ("jobmanager.sh", "taskmanager.sh", "flink"))
    assert any((home / "lib").glob(f"flink-dist-{config.FLINK_VERSION}.jar"))
    assert flink_python() == DEFAULT_FLINK_VENV / "bin" / "python"


def test_a_missing_venv_says_to_run_make_flink_venv(tmp_path):
    settings = FlinkSettings(venv=tmp_path / "nowhere")
    for find in (flink_python, flink_home):
        with pytest.raises(MissingToolError, match=r"no Flink venv at .*nowhere.*run `make flink-venv`"):
            find(settings)


def test_the_requirements_pin_the_configured_pyflink(repo_root):
    """requirements-flink.txt and its lock name the release config.FLINK_VERSION (and flink_home) expects."""
    pin = f"apache-flink=={config.FLINK_VERSION}"
    assert pin in (repo_root / "requirements-flink.txt").read_text().splitlines()
    assert pin in (repo_root / "constraints-flink.txt").read_text().splitlines()


def _started(tmp_path: Path) -> FlinkSettings:
    """Settings whose cluster has a generated configuration, as after a start."""
    settings = FlinkSettings(rest_port=18081, cache_dir=tmp_path)
    settings.conf_dir.mkdir(parents=True)
    (settings.conf_dir / "config.yaml").write_text("rest.port: 18081\n")
    return settings


def test_a_script_is_submitted_with_flink_run_py_and_the_clusters_config(tmp_path):
    # Setup
    settings = _started(tmp_path)
    job = tmp_path / "job.py"
    job.write_text("")

    # Run
    argv = submit_command(settings, script=job, args=["--rows", "10"], detached=True)

    # Assert
    assert argv == ["env", f"FLINK_CONF_DIR={settings.conf_dir}", str(flink_home() / "bin" / "flink"), "run",
                    "-m", "127.0.0.1:18081", "-d", "-py", str(job), "--", "--rows", "10"]


def test_a_module_is_submitted_with_pym_and_java_home_is_passed_on(tmp_path):
    settings = FlinkSettings(rest_port=18081, cache_dir=tmp_path, java_home=Path("/opt/jdk17"))
    _started(tmp_path)
    argv = submit_command(settings, module="fraudlab.detect.flink_job")
    assert argv[:3] == ["env", f"FLINK_CONF_DIR={settings.conf_dir}", "JAVA_HOME=/opt/jdk17"]
    assert argv[-4:] == ["-m", "127.0.0.1:18081", "-pym", "fraudlab.detect.flink_job"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one of script= .* and module="),
    ({"script": Path("a.py"), "module": "a"}, "exactly one of script="),
    ({"script": Path("/no/such/job.py")}, r"script=/no/such/job.py does not exist"),
    ({"module": "fraudlab/detect/flink_job.py"}, "Invalid module 'fraudlab/detect/flink_job.py'"),
])
def test_a_bad_job_is_refused_by_name(tmp_path, kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        submit_command(_started(tmp_path), **kwargs)


def test_submitting_before_a_start_says_to_start_the_cluster(tmp_path):
    with pytest.raises(FlinkError, match=r"start the cluster first \(`fraudlab flink up --port 18081`\)"):
        submit_command(FlinkSettings(rest_port=18081, cache_dir=tmp_path), module="job")


def test_status_lines_say_what_runs():
    stopped = FlinkStatus(running=False, rest_url="http://127.0.0.1:18081", state_dir=Path("/s"))
    running = FlinkStatus(running=True, rest_url="http://127.0.0.1:18081", state_dir=Path("/s"), jobmanager_pid=7,
                          taskmanager_pids=(8,), answering=True, taskmanagers=1, slots_total=2, slots_available=1,
                          running_jobs=("fraudlab-scoring",))
    assert stopped.describe() == "Flink cluster at http://127.0.0.1:18081: not running (state /s)"
    line = running.describe()
    for part in ("JobManager pid 7", "TaskManager pids [8]", "1 TaskManager(s) registered", "1/2 slots free",
                 "running jobs: fraudlab-scoring", "web UI http://127.0.0.1:18081/"):
        assert part in line
