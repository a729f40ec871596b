"""docker-compose.yaml and the images it builds cannot run here (no Docker engine), so they are checked statically."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click
import pytest
import yaml

from fraudlab import config
from fraudlab.cli import cli
from fraudlab.detect.model import DEFAULT_DETECTOR
from fraudlab.detect.realtime import JOB_MODULE
from fraudlab.detect.scoring_job import ScoringJobSettings

HEALTHY = {"condition": "service_healthy"}
FLINK_SERVICES = ("jobmanager", "taskmanager", "detect")
#: The broker's listener for other containers (its advertised INTERNAL listener).
INTERNAL_BOOTSTRAP = "kafka:19092"
#: The flags of the Go ingestion gateway (gateway/cmd/fraudlab-gateway), the names and meanings of `fraudlab serve`'s,
#: with --lua-dir for the folder of fraudlab's Lua scripts; those of them that take no value.
GATEWAY_FLAGS = frozenset({
    "bootstrap", "topic", "partitions", "host", "port", "tls-cert", "tls-key", "rate-limit", "rate-burst",
    "dedup-window", "dedup-capacity", "redis-lease", "max-message-bytes", "ack-timeout", "grace", "flush-timeout",
    "max-future-ms", "stream-window", "startup-timeout", "reuse-port", "lua-dir"})
GATEWAY_BOOL_FLAGS = frozenset({"reuse-port"})
#: What the gateway reads from its environment: the accepted bearer tokens and the Redis URL.
GATEWAY_ENV = frozenset({"FRAUDLAB_TOKENS", "REDIS_URL"})


@pytest.fixture(scope="module")
def compose(repo_root):
    return yaml.safe_load((repo_root / "docker-compose.yaml").read_text())


@dataclass(frozen=True)
class Dockerfile:
    """A Dockerfile as read here: its instructions (continuation lines joined), ARG defaults and ENV values."""

    instructions: tuple[tuple[str, str], ...]
    args: dict[str, str]
    env: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        lines = path.read_text().replace("\\\n", "").splitlines()
        instructions = tuple((word.upper(), rest.strip()) for word, _, rest in
                             (line.strip().partition(" ") for line in lines) if word and not word.startswith("#"))
        pairs = {kind: dict(rest.split("=", 1) for word, rest in instructions if word == kind and "=" in rest)
                 for kind in ("ARG", "ENV")}
        return cls(instructions, pairs["ARG"], pairs["ENV"])

    def rendered(self, word: str) -> list[str]:
        """The arguments of every ``word`` instruction, with ``${ARG}`` replaced by the ARG's default."""
        return [re.sub(r"\$\{(\w+)\}", lambda m: self.args.get(m[1], m[0]), rest)
                for kind, rest in self.instructions if kind == word]


@pytest.fixture(scope="module")
def flink_image(repo_root) -> Dockerfile:
    return Dockerfile.read(repo_root / "Dockerfile.flink")


def _unescaped(value: str) -> str:
    """A string of the compose file as the container gets it: compose turns ``$$`` into ``$``."""
    return value.replace("$$", "$")


def _flink_properties(service: dict) -> dict[str, str]:
    """FLINK_PROPERTIES as the flink image's entrypoint reads it: ``key: value`` a line, every space dropped."""
    lines = _unescaped(service["environment"]["FLINK_PROPERTIES"]).splitlines()
    return dict(re.sub(r"\s", "", line).split(":", 1) for line in lines if line.strip())


def _job_settings(compose) -> ScoringJobSettings:
    return ScoringJobSettings.from_json(compose["services"]["detect"]["environment"]["SCORING_JOB_SETTINGS"])


def _script_lines(service: dict) -> list[list[str]]:
    """The commands of a ``sh -ec SCRIPT`` / ``bash -ec SCRIPT`` service, one argv a line."""
    command = service["command"]
    assert command[:2] in (["sh", "-ec"], ["bash", "-ec"]), "a script service stops at the first failing line"
    return [shlex.split(line) for line in _unescaped(command[2]).splitlines() if line.strip()]


def test_services_and_their_start_order(compose):
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "ingestion", "gateway", "producer", "topics", *FLINK_SERVICES,
                             "mlflow"}
    assert services["ingestion"]["depends_on"] == {"kafka": HEALTHY, "redis": HEALTHY}
    assert services["gateway"]["depends_on"] == services["ingestion"]["depends_on"]
    # the gateway only with the go profile: an optional dependency that is not enabled is dropped
    assert services["producer"]["depends_on"] == {"ingestion": HEALTHY, "gateway": {**HEALTHY, "required": False}}
    assert services["topics"]["depends_on"] == {"kafka": HEALTHY}
    assert services["taskmanager"]["depends_on"] == {"jobmanager": HEALTHY}
    assert services["detect"]["depends_on"] == {
        "kafka": HEALTHY, "topics": {"condition": "service_completed_successfully"},
        "jobmanager": HEALTHY, "taskmanager": HEALTHY}
    for name in ("kafka", "redis", "ingestion", "gateway", "jobmanager", "taskmanager", "mlflow"):
        assert services[name]["healthcheck"]["test"], f"{name} needs a healthcheck"
    for name in ("topics", "detect"):
        assert services[name]["restart"] == "no", f"{name} is a one-shot step"


def test_two_ingestion_workers_share_state_in_a_persistent_redis(compose):
    services = compose["services"]
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert redis["command"][1:3] == ["--appendonly", "yes"] and "everysec" in redis["command"]
    ingestion = services["ingestion"]
    command = ingestion["command"]
    assert command[command.index("--workers") + 1] == "2"
    assert ingestion["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_kafka_is_single_node_kraft_from_the_official_image(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "INTERNAL://kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "9092:9092" in kafka["ports"]
    assert "kafka:19092" in " ".join(kafka["healthcheck"]["test"])


def test_fraudlab_services_point_at_the_internal_listener_and_expose_50051(compose):
    services = compose["services"]
    for name in ("ingestion", "producer"):
        assert services[name]["environment"]["KAFKA_BROKER"] == "kafka:19092"
    assert "50051:50051" in services["ingestion"]["ports"]
    assert "--port" in services["ingestion"]["command"] and "50051" in services["ingestion"]["command"]
    assert "ingestion:50051" in services["producer"]["command"]


def _copied_sources(dockerfile: Path) -> list[str]:
    """What a Dockerfile copies from the build context (not ``COPY --from`` another stage)."""
    sources = []
    for kind, rest in Dockerfile.read(dockerfile).instructions:
        words = rest.split()
        if kind == "COPY" and not any(word.startswith("--from=") for word in words):
            sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def _built_dockerfiles(compose, repo_root: Path) -> dict[Path, Path]:
    """Each Dockerfile the file builds, with its build context."""
    built = {}
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            context = repo_root / build["context"]
            built[context / build.get("dockerfile", "Dockerfile")] = context
    return built


def test_every_referenced_file_exists(compose, repo_root):
    built = _built_dockerfiles(compose, repo_root)
    assert repo_root / "gateway" / "Dockerfile" in built
    for dockerfile, context in built.items():
        assert dockerfile.is_file()
        assert _copied_sources(dockerfile), f"{dockerfile.name} copies nothing from its context"
        for source in _copied_sources(dockerfile):
            assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"


def _dockerignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore line as Docker reads it: from the context root, ``**`` across folders, ``*`` within one."""
    text = re.escape(pattern.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    return re.compile(text.replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + "$")


def _docker_ignored(lines: list[str], path: str) -> bool:
    """Whether ``path`` (from the context root) stays out of the context: it or a folder above it matches, last wins."""
    parts = PurePosixPath(path).parts
    ignored = False
    for line in lines:
        negated = line.startswith("!")
        pattern = _dockerignore_pattern(line.removeprefix("!"))
        if any(pattern.match("/".join(parts[:end])) for end in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_out_no_file_an_image_copies(compose, repo_root):
    lines = [line.strip() for line in (repo_root / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", ".git/HEAD", "gateway/bin/fraudlab-gateway", "fraudlab/__pycache__/x.pyc"):
        assert _docker_ignored(lines, path), f"{path} would be sent with every build"
    for dockerfile, context in _built_dockerfiles(compose, repo_root).items():
        for source in _copied_sources(dockerfile):
            listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", source],
                                    cwd=context, capture_output=True, text=True, check=True).stdout.split()
            for path in [source, *listed]:
                assert not _docker_ignored(lines, path), f"{dockerfile.name} copies {path}, which .dockerignore drops"


def _fraudlab_invocations(compose) -> list[list[str]]:
    """Every ``fraudlab ...`` command line in the file: service commands and healthchecks."""
    found = []
    for service in compose["services"].values():
        for argv in (service.get("command"), service.get("healthcheck", {}).get("test")):
            if isinstance(argv, list) and "fraudlab" in argv:
                found.append(argv[argv.index("fraudlab") + 1:])
    return found


def test_every_fraudlab_command_in_the_file_exists_with_those_flags(compose):
    invocations = _fraudlab_invocations(compose)
    assert {argv[0] for argv in invocations} == {"serve", "produce", "health"}
    for argv in invocations:
        command = cli.commands.get(argv[0])
        assert command is not None, f"docker-compose.yaml runs `fraudlab {argv[0]}`, which the CLI lacks"
        try:
            command.make_context(argv[0], list(argv[1:]))
        except click.UsageError as exc:
            pytest.fail(f"`fraudlab {' '.join(argv)}` in docker-compose.yaml: {exc.format_message()}")


# --------------------------------------------------------------------------- Apache Flink and the scoring job


def test_flink_image_is_the_official_one_at_the_configured_versions(flink_image, repo_root):
    assert flink_image.args["FLINK_VERSION"] == config.FLINK_VERSION
    assert flink_image.args["JAVA_VERSION"] == "17"
    assert flink_image.args["FLINK_KAFKA_CONNECTOR"] == config.FLINK_KAFKA_CONNECTOR
    assert flink_image.rendered("FROM") == [f"flink:{config.FLINK_VERSION}-scala_2.12-java17"]
    # PyFlink comes from the Flink venv's requirements, which must name the image's Flink release.
    assert f"apache-flink=={config.FLINK_VERSION}" in (repo_root / "requirements-flink.txt").read_text().splitlines()


def test_flink_image_fetches_the_configured_kafka_connector_from_maven_central(flink_image):
    version = config.FLINK_KAFKA_CONNECTOR
    url = (f"https://repo1.maven.org/maven2/org/apache/flink/flink-sql-connector-kafka/{version}/"
           f"flink-sql-connector-kafka-{version}.jar")
    (download,) = [run for run in flink_image.rendered("RUN") if "flink-sql-connector-kafka" in run]
    assert f'url="{url}"' in download
    assert 'wget -nv -O "$KAFKA_CONNECTOR_JAR" "$url"' in download
    assert "sha1sum -c" in download, "the jar is checked against Maven Central's checksum"
    assert PurePosixPath(flink_image.env["KAFKA_CONNECTOR_JAR"]).suffix == ".jar"


def _pip_installs(flink_image) -> list[list[str]]:
    """The arguments of every ``pip install`` the image runs, in order."""
    return [shlex.split(arguments) for run in flink_image.rendered("RUN")
            for arguments in re.findall(r"\bpip install ([^;&]*)", run)]


def test_flink_image_installs_fraudlab_as_the_flink_venv_does(flink_image, repo_root):
    """`make flink-venv`: the requirements pinned by the lock, then fraudlab without dependencies."""
    requirements, package = _pip_installs(flink_image)
    assert requirements[requirements.index("-r") + 1] == "requirements-flink.txt"
    assert requirements[requirements.index("-c") + 1] == "constraints-flink.txt"
    assert package[-2:] == ["--no-deps", "."]
    copied = {source for copy in flink_image.rendered("COPY") for source in copy.split()[:-1]}
    assert {"requirements-flink.txt", "constraints-flink.txt", "pyproject.toml", "README.md", "fraudlab"} <= copied
    for name in ("requirements-flink.txt", "constraints-flink.txt"):
        assert (repo_root / name).is_file()
    # `python` is the venv's, for the job's driver and the TaskManager's Python workers alike.
    venv = flink_image.env["VIRTUAL_ENV"]
    assert flink_image.env["PATH"].startswith(f"{venv}/bin:")
    assert flink_image.rendered("USER")[-1] == "flink", "Flink runs as the image's own unprivileged user"


def test_flink_services_build_one_image_and_share_one_configuration(compose, flink_image):
    services = compose["services"]
    venv_python = f"{flink_image.env['VIRTUAL_ENV']}/bin/python"
    for name in FLINK_SERVICES:
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile.flink"}
        properties = _flink_properties(services[name])
        assert properties["jobmanager.rpc.address"] == "jobmanager"
        assert properties["rest.address"] == "jobmanager"
        assert properties["rest.port"] == str(config.FLINK_REST_PORT)
        assert properties["taskmanager.numberOfTaskSlots"] == str(config.FLINK_TASK_SLOTS)
        assert properties["python.executable"] == properties["python.client.executable"] == venv_python
        assert properties["execution.checkpointing.dir"] == PurePosixPath(_job_settings(compose).checkpoint_dir
                                                                          ).as_uri()
    assert services["jobmanager"]["command"] == "jobmanager"
    assert services["jobmanager"]["hostname"] == "jobmanager"
    assert services["taskmanager"]["command"] == "taskmanager"


def test_flink_web_ui_is_published_on_loopback_and_health_means_ready(compose):
    services = compose["services"]
    port = config.FLINK_REST_PORT
    assert services["jobmanager"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    jobmanager = services["jobmanager"]["healthcheck"]["test"]
    assert jobmanager[:3] == ["CMD", "python", "-c"] and f"'http://localhost:{port}/overview'" in jobmanager[3]
    # A TaskManager is healthy once the JobManager lists it (resource id = container hostname) with all its slots.
    assert _flink_properties(services["taskmanager"])["taskmanager.resource-id"] == "${HOSTNAME}"
    taskmanager = services["taskmanager"]["healthcheck"]["test"]
    assert taskmanager[:3] == ["CMD", "python", "-c"]
    assert f"'http://jobmanager:{port}/taskmanagers'" in taskmanager[3]
    assert "t['id'] == os.environ['HOSTNAME']" in taskmanager[3]
    assert f"t['slotsNumber'] >= {config.FLINK_TASK_SLOTS}" in taskmanager[3]
    for name in ("jobmanager", "taskmanager"):
        compile(services[name]["healthcheck"]["test"][3], f"{name} healthcheck", "exec")


def test_topics_service_creates_the_jobs_topics_before_it_starts(compose):
    topics = compose["services"]["topics"]
    assert topics["image"] == compose["services"]["kafka"]["image"]
    settings = _job_settings(compose)
    expected = {settings.source_topic: config.TOPIC_PARTITIONS, settings.scored_topic: config.TOPIC_PARTITIONS,
                settings.alerts_topic: config.TOPIC_PARTITIONS, settings.dead_letter_topic: config.TOPIC_PARTITIONS,
                settings.model_updates_topic: 1}
    created = {}
    for argv in _script_lines(topics):
        assert argv[0] == "/opt/kafka/bin/kafka-topics.sh"
        assert argv[argv.index("--bootstrap-server") + 1] == INTERNAL_BOOTSTRAP
        assert {"--create", "--if-not-exists"} <= set(argv), "creating is idempotent: a second `up` must pass"
        created[argv[argv.index("--topic") + 1]] = int(argv[argv.index("--partitions") + 1])
    assert created == expected


def test_detect_submits_the_real_job_module_detached_once(compose):
    lines = _script_lines(compose["services"]["detect"])
    submit = lines[-1]
    assert submit[0] == "exec" and PurePosixPath(submit[1]).name == "flink"
    assert submit[2:] == ["run", "-m", f"jobmanager:{config.FLINK_REST_PORT}", "-d", "-pym", JOB_MODULE, "--",
                          "$SCORING_JOB_SETTINGS"]
    assert JOB_MODULE == "fraudlab.detect.flink_job" and importlib.util.find_spec(JOB_MODULE) is not None
    # Before submitting, a job the cluster already runs (a second `docker compose up`) is looked for.
    check = " ".join(" ".join(argv) for argv in lines[:-1])
    assert f"http://jobmanager:{config.FLINK_REST_PORT}/jobs/overview" in check and "exit 0" in check


def test_detect_settings_are_valid_and_name_what_the_image_holds(compose, flink_image):
    settings = _job_settings(compose)
    assert settings.bootstrap == INTERNAL_BOOTSTRAP
    assert f"INTERNAL://{INTERNAL_BOOTSTRAP}" in compose["services"]["kafka"]["environment"][
        "KAFKA_ADVERTISED_LISTENERS"]
    assert settings.detached and not settings.bounded, "submitted to run until stopped, the client returning"
    assert settings.connector_jar == flink_image.env["KAFKA_CONNECTOR_JAR"]
    # The GeoIP databases are fetched at build time into the cache root the job opens.
    assert settings.geoip_dir == flink_image.env["FRAUDLAB_CACHE_DIR"]
    runs = flink_image.rendered("RUN")
    assert any("fetch_databases(Path(os.environ['FRAUDLAB_CACHE_DIR'])" in run for run in runs)
    # The pre-trained detector shipped in the package, linked from a fixed path.
    assert DEFAULT_DETECTOR.is_file()
    assert settings.model == f"{flink_image.env['PRETRAINED_DIR']}/{DEFAULT_DETECTOR.name}"
    assert any("print(DEFAULT_DETECTOR.parent)" in run and '"$PRETRAINED_DIR"' in run for run in runs)


def test_checkpoints_live_on_a_volume_the_jobmanager_and_taskmanager_share(compose, flink_image):
    checkpoints = _job_settings(compose).checkpoint_dir
    assert "flink-checkpoints" in compose["volumes"]
    for name in ("jobmanager", "taskmanager"):
        assert f"flink-checkpoints:{checkpoints}" in compose["services"][name]["volumes"]
    # A fresh named volume takes the ownership of the image's directory: Flink's user must be able to write it.
    assert any(f"chown flink:flink {checkpoints}" in run for run in flink_image.rendered("RUN"))


def test_no_shell_variable_is_left_to_compose_interpolation(compose):
    """Compose replaces ``$VAR`` with the *host's* variable before the container sees it; scripts must write ``$$``."""
    for name in ("topics", *FLINK_SERVICES):
        service = compose["services"][name]
        texts = [*service.get("command", [])] if isinstance(service.get("command"), list) else []
        texts += [str(value) for value in service.get("environment", {}).values()]
        texts += service.get("healthcheck", {}).get("test", [])
        for text in texts:
            assert "$" not in text.replace("$$", ""), f"{name}: unescaped $ in {text[:60]!r}"


def _pinned(repo_root: Path, package: str) -> str:
    """The version constraints.txt pins ``package`` to."""
    pins = dict(line.split("==", 1) for line in (repo_root / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    return pins[package].strip()


def test_mlflow_runs_the_pinned_version_as_fraudlab_mlflow_up_does(compose, repo_root):
    service = compose["services"]["mlflow"]
    assert service["image"] == f"ghcr.io/mlflow/mlflow:v{_pinned(repo_root, 'mlflow')}"
    command = service["command"]
    options = {word: value for word, value in zip(command, [*command[1:], ""], strict=True)
               if word.startswith("--") and not value.startswith("--")}
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    assert options["--port"] == str(config.MLFLOW_PORT) and options["--host"] == "0.0.0.0"
    assert options["--workers"] == "1"
    # the store and the artifacts on the named volume, so both outlive the container
    volume, _, mount = service["volumes"][0].partition(":")
    assert volume in compose["volumes"]
    assert options["--backend-store-uri"] == f"sqlite:///{mount}/mlflow.db"
    assert options["--artifacts-destination"].startswith(f"{mount}/")
    allowed = options["--allowed-hosts"].split(",")
    assert {"mlflow", f"mlflow:{config.MLFLOW_PORT}", f"localhost:{config.MLFLOW_PORT}"} <= set(allowed)


def test_mlflow_is_published_on_loopback_and_healthy_when_it_answers(compose):
    service = compose["services"]["mlflow"]
    port = config.MLFLOW_PORT
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and f"'http://localhost:{port}/health'" in test[3]
    compile(test[3], "mlflow healthcheck", "exec")


# --------------------------------------------------------------------------- the Go ingestion gateway (profile go)


@pytest.fixture(scope="module")
def gateway_image(repo_root) -> Dockerfile:
    return Dockerfile.read(repo_root / "gateway" / "Dockerfile")


def _stages(image: Dockerfile) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, one list a FROM."""
    stages: list[list[tuple[str, str]]] = []
    for kind, rest in image.instructions:
        if kind == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((kind, rest))
    return stages


def _entrypoint(image: Dockerfile) -> list[str]:
    (entrypoint,) = [rest for kind, rest in _stages(image)[-1] if kind == "ENTRYPOINT"]
    argv = json.loads(entrypoint)
    assert isinstance(argv, list), "exec form: the gateway is PID 1 and gets SIGTERM itself (no shell in the image)"
    return argv


def _gateway_options(argv: list[str]) -> dict[str, str | bool]:
    """``--flag value``, ``--flag=value`` and bare boolean flags, as Go's flag package reads the gateway's; only its."""
    options: dict[str, str | bool] = {}
    words = iter(argv)
    for word in words:
        # Go's flag package stops at the first word that is no flag and the gateway ignores the rest: none may be there
        assert word.startswith("--"), f"{word!r} is no flag: the gateway would ignore it and every flag after it"
        name, equals, value = word[2:].partition("=")
        assert name in GATEWAY_FLAGS, f"--{name} is not a flag of fraudlab-gateway"
        assert name not in options, f"--{name} is given twice"
        if name in GATEWAY_BOOL_FLAGS:
            options[name] = value.lower() not in ("false", "0") if equals else True
        elif equals:
            options[name] = value
        else:
            following = next(words, None)
            assert following is not None, f"--{name} needs a value"
            options[name] = following
    return options


@pytest.mark.parametrize("argv", [["--workers", "2"], ["--port", "50051", "serve"], ["--port"],
                                  ["-port", "50051"], ["--port", "1", "--port=2"], ["--redis", "redis://redis"]])
def test_gateway_options_refuse_what_the_gateway_would_not_take(argv):
    with pytest.raises(AssertionError):
        _gateway_options(argv)


def _gateway_argv(compose, gateway_image) -> dict[str, str | bool]:
    """The gateway's flags in the container: the image's ENTRYPOINT, then the service's command (replacing CMD)."""
    command = compose["services"]["gateway"]["command"]
    assert isinstance(command, list) and all(isinstance(word, str) for word in command)
    return _gateway_options(_entrypoint(gateway_image)[1:] + command)


def test_gateway_flags_are_the_gateways_own(repo_root):
    """GATEWAY_FLAGS above are what gateway/cmd/fraudlab-gateway declares (its flag.FlagSet)."""
    source = "\n".join(path.read_text() for path in (repo_root / "gateway/cmd/fraudlab-gateway").glob("*.go"))
    declared = set(re.findall(r'flags\.\w+\("([\w-]+)"', source))
    assert not GATEWAY_FLAGS - declared, f"the gateway lacks {sorted(GATEWAY_FLAGS - declared)}"
    assert set(re.findall(r'flags\.Bool\("([\w-]+)"', source)) & GATEWAY_FLAGS == GATEWAY_BOOL_FLAGS
    assert set(re.findall(r'os\.Getenv\("(\w+)"\)', source)) == GATEWAY_ENV


def test_only_the_gateway_is_in_a_profile(compose):
    """`docker compose up` starts what it always did; the gateway only with `--profile go`."""
    services = compose["services"]
    assert services["gateway"]["profiles"] == ["go"]
    assert [name for name, service in services.items() if "profiles" in service] == ["gateway"]


def test_gateway_builds_gateway_dockerfile_from_the_repository_root(compose, repo_root, gateway_image):
    assert compose["services"]["gateway"]["build"] == {"context": ".", "dockerfile": "gateway/Dockerfile"}
    assert "image" not in compose["services"]["gateway"]
    copied = _copied_sources(repo_root / "gateway" / "Dockerfile")
    assert {"gateway/go.mod", "gateway/go.sum", "gateway/"} <= set(copied)
    assert (repo_root / "gateway" / "go.sum").is_file(), "go.sum is committed: the image builds what was tested"


def _go_line(repo_root: Path) -> str:
    (version,) = re.findall(r"^go (\S+)$", (repo_root / "gateway" / "go.mod").read_text(), re.MULTILINE)
    return version


def test_gateway_builder_is_the_go_release_of_go_mod_and_the_binary_static(gateway_image, repo_root):
    build, final = _stages(gateway_image)
    go = _go_line(repo_root)
    assert build[0] == ("FROM", f"golang:{go}-bookworm AS build"), f"gateway/go.mod says go {go}"
    assert ("ENV", "CGO_ENABLED=0") in build, "a static binary: the final image has no libc"
    (compile_,) = [shlex.split(rest) for kind, rest in build if kind == "RUN" and "go build" in rest]
    assert compile_[:2] == ["go", "build"] and compile_[-1] == "./cmd/fraudlab-gateway"
    assert ("WORKDIR", "/src/gateway") in build, "built inside the module, from gateway/"
    binary = compile_[compile_.index("-o") + 1]
    assert final[0][1] == "gcr.io/distroless/static-debian12:nonroot"
    (copy,) = [rest.split() for kind, rest in final if kind == "COPY" and rest.startswith("--from=build ")]
    assert binary in copy[1:-1]
    assert _entrypoint(gateway_image)[0] == f"{copy[-1]}{PurePosixPath(binary).name}"


def test_gateway_image_ships_the_lua_scripts_where_lua_dir_points(gateway_image, compose, repo_root):
    lua = repo_root / "fraudlab" / "ingest" / "lua"
    assert sorted(path.name for path in lua.glob("*.lua")), "the gateway's Redis scripts are fraudlab's own"
    final = _stages(gateway_image)[-1]
    (copy,) = [rest.split() for kind, rest in final if kind == "COPY" and rest.split()[0].startswith("fraudlab/")]
    assert PurePosixPath(copy[0]) == PurePosixPath("fraudlab/ingest/lua") and copy[0].endswith("/")
    options = _gateway_argv(compose, gateway_image)
    assert PurePosixPath(options["lua-dir"]) == PurePosixPath(copy[1]) and copy[1].endswith("/")
    assert "lua-dir" in _gateway_options(_entrypoint(gateway_image)[1:]), "the image, not compose, knows the path"


def _serve_params(service: dict, monkeypatch) -> dict:
    """What `fraudlab serve` resolves in the service's container: its command, then its environment for the rest."""
    serve = cli.commands["serve"]
    for param in serve.params:
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        for name in envvars:
            monkeypatch.delenv(name, raising=False)
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    command = service["command"]
    return serve.make_context("serve", command[command.index("serve") + 1:]).params


def _published(mapping: str) -> tuple[str, int, int]:
    """``[HOST:]PUBLISHED:TARGET`` as (interface, published port, container port); no interface is every one."""
    *interface, published, target = mapping.split(":")
    return (interface[0] if interface else "0.0.0.0"), int(published), int(target)


def test_gateway_serves_what_the_python_ingestion_serves(compose, gateway_image, monkeypatch):
    services = compose["services"]
    python = _serve_params(services["ingestion"], monkeypatch)
    gateway = _gateway_argv(compose, gateway_image)
    # the same broker, topic, partitions and port, given explicitly (the gateway's defaults are for a laptop)
    assert gateway["bootstrap"] == python["bootstrap"] == INTERNAL_BOOTSTRAP
    assert gateway["topic"] == python["topic"] == config.TOPIC
    assert int(gateway["partitions"]) == python["partitions"] == config.TOPIC_PARTITIONS
    assert int(gateway["port"]) == python["port"] == config.SERVICE_PORT
    assert gateway["host"] == python["host"] == "0.0.0.0"
    # the same Redis state; nothing in the environment that the gateway does not read
    environment = services["gateway"]["environment"]
    assert set(environment) <= GATEWAY_ENV
    assert environment["REDIS_URL"] == python["redis_url"] == services["ingestion"]["environment"]["REDIS_URL"]
    # the same published port, on loopback
    port = config.SERVICE_PORT
    assert services["gateway"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert [_published(mapping)[1:] for mapping in services["ingestion"]["ports"]] == [(port, port)]


def test_gateway_health_is_the_grpc_health_service_asked_by_a_pinned_probe(compose, gateway_image):
    services = compose["services"]
    test = services["gateway"]["healthcheck"]["test"]
    port = config.SERVICE_PORT
    assert test == ["CMD", "/usr/local/bin/grpc-health-probe", f"-addr=127.0.0.1:{port}"]
    # what `fraudlab health` asks of the Python server, on the same schedule
    assert services["ingestion"]["healthcheck"]["test"][-2:] == ["--target", f"127.0.0.1:{port}"]
    timing = {key: value for key, value in services["ingestion"]["healthcheck"].items() if key != "test"}
    assert {key: value for key, value in services["gateway"]["healthcheck"].items() if key != "test"} == timing
    build, final = _stages(gateway_image)
    (install,) = [rest for kind, rest in build if kind == "RUN" and "grpc-health-probe" in rest]
    assert re.fullmatch(r"GOBIN=/out go install github\.com/grpc-ecosystem/grpc-health-probe@v\d+\.\d+\.\d+", install)
    (copy,) = [rest.split() for kind, rest in final if kind == "COPY" and rest.startswith("--from=build ")]
    assert "/out/grpc-health-probe" in copy[1:-1] and copy[-1] == "/usr/local/bin/"


def test_producer_reaches_whichever_ingestion_runs(compose):
    services = compose["services"]
    command = services["producer"]["command"]
    host, _, port = command[command.index("--target") + 1].partition(":")
    assert (host, int(port)) == ("ingestion", config.SERVICE_PORT)
    assert host in services["gateway"]["networks"]["default"]["aliases"]
