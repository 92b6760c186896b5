"""The compose stack holds together: docker-compose.yml, the Dockerfile and config/docker.toml.

Docker is not needed: the files are read as Docker would read them (compose variables filled in with
their defaults, Dockerfile instructions joined across continuation lines), and the configuration the
image carries is validated by notifier's own loader in the environment compose gives the daemon.
Every host that configuration names must be a compose service listening on the port it names.

PyYAML (a development dependency in requirements.lock) parses the compose file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from notifier.domain.durations import parse_duration
from notifier.errors import ConfigError
from notifier.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SERVICES = {"rabbitmq", "postgres", "sandbox", "notifier"}
# The ports the official images listen on; the compose file does not change them.
IMAGE_PORTS = {"postgres": 5432, "rabbitmq": 5672}
# Inside a container, a server on loopback is out of the other containers' reach.
EVERY_INTERFACE = {"0.0.0.0", "::"}  # noqa: S104 - binding every interface is what is checked
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "amqp": 5672, "http": 80, "https": 443}


def _yaml_load(text: str) -> Any:
    return yaml.safe_load(text)


_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """Compose's variable substitution (``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``$$``)."""
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match["name"] or match["bare"]
        found, op = environ.get(name), match["op"]
        if (op == ":-" and not found) or (op == "-" and found is None):
            return match["arg"] or ""
        if op in (":?", "?") and not found:
            pytest.fail(f"compose needs {name} set: {match['arg']}")
        return found or ""

    return _VARIABLE.sub(substitute, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The Dockerfile's stages, each the list of its instructions from its FROM on."""
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue  # comments and blank lines, also inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        lines.append(pending)
        pending = ""
    stages: list[list[Instruction]] = []
    for line in lines:
        keyword, _, args = line.strip().partition(" ")
        instruction = Instruction(keyword=keyword.upper(), args=args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:  # ARG before the first FROM belongs to no stage
            stages[-1].append(instruction)
    return stages


def args_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.args for i in stage if i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"{args!r} is not in exec (JSON array) form"
    return [str(part) for part in parsed]


def container_port(entry: Any) -> int:
    """The container side of a compose ``ports`` entry (short ``[ip:][host:]container`` or long form)."""
    if isinstance(entry, dict):
        return int(entry["target"])
    return int(str(entry).rsplit(":", 1)[-1].split("/")[0])


def flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Stack:
    raw: dict[str, Any]  # the compose file as written, variables not filled in
    services: dict[str, Any]  # its services, variables filled in with their defaults
    stages: list[list[Instruction]]  # the Dockerfile's
    environment: dict[str, str]  # what compose passes to the notifier container
    config_in_image: PurePosixPath
    config_file: Path  # the repository file the image carries at config_in_image
    settings: Settings

    @property
    def final_stage(self) -> list[Instruction]:
        return self.stages[-1]

    def healthcheck_port(self) -> int:
        (check,) = args_of(self.final_stage, "HEALTHCHECK")
        found = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)/healthz\b", check)
        assert found, f"the image's HEALTHCHECK does not ask /healthz on loopback: {check}"
        return int(found[1])


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def image_path_of(stage: list[Instruction], in_image: PurePosixPath) -> Path:
    """The repository file a COPY of the build context puts at ``in_image``."""
    for args in args_of(stage, "COPY"):
        if "--from=" in args:
            continue  # from another stage, not from the repository
        parts = [part for part in args.split() if not part.startswith("--")]
        if len(parts) != 2:
            continue
        source, target = parts
        if source.endswith("/") and in_image.is_relative_to(target):
            return REPO / source / in_image.relative_to(target)
        if PurePosixPath(target) == in_image:
            return REPO / source
    pytest.fail(f"the image gets {in_image} from no COPY of the build context")


def config_read_by(
    command: list[str], environment: Mapping[str, str], stage: list[Instruction]
) -> PurePosixPath:
    """The configuration file a process of the image reads: ``-c``, else ``$NOTIFIER_CONFIG``."""
    image_env = dict(
        part.split("=", 1) for args in args_of(stage, "ENV") for part in args.split() if "=" in part
    )
    config = (
        flag(command, "-c")
        or flag(command, "--config")
        or environment.get("NOTIFIER_CONFIG")
        or image_env.get("NOTIFIER_CONFIG")
    )
    assert config, "neither compose nor the image says which configuration to read"
    workdir = PurePosixPath((args_of(stage, "WORKDIR") or ["/"])[-1])
    return workdir / config


@pytest.fixture(scope="module")
def stack() -> Stack:
    raw = _yaml_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    services = interpolate(raw["services"], {})
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    notifier = services["notifier"]
    environment = environment_of(notifier)
    command = notifier.get("command") or exec_form(args_of(stages[-1], "CMD")[-1])
    config_in_image = config_read_by(command, environment, stages[-1])
    config_file = image_path_of(stages[-1], config_in_image)
    # The environment compose gives the container, and nothing of this machine's.
    settings = load_settings(config_file, environment)
    return Stack(
        raw=raw,
        services=services,
        stages=stages,
        environment=environment,
        config_in_image=config_in_image,
        config_file=config_file,
        settings=settings,
    )


def test_the_image_runs_config_docker_toml_and_it_validates(stack: Stack) -> None:
    assert stack.config_file == REPO / "config" / "docker.toml"
    assert stack.settings.store.resolved_url.startswith("postgresql://")
    assert stack.settings.queue.resolved_url.startswith("amqp://")
    # No [templates] in the file: the templates installed with the package.
    assert stack.settings.templates.dir == REPO / "notifier" / "templates"
    assert (stack.settings.templates.dir / "en" / "notice.txt.j2").is_file()


def test_the_configuration_refuses_to_start_without_the_secrets_compose_passes(stack: Stack) -> None:
    for name in ("NOTIFIER_STORE_URL", "NOTIFIER_QUEUE_URL", "NOTIFIER_INTAKE_TOKEN"):
        without = {key: value for key, value in stack.environment.items() if key != name}
        with pytest.raises(ConfigError, match=name):
            load_settings(stack.config_file, without)


def test_every_service_exists_and_has_a_health_check(stack: Stack) -> None:
    assert set(stack.services) >= SERVICES
    image_check = args_of(stack.final_stage, "HEALTHCHECK")
    for name in SERVICES:
        service = stack.services[name]
        check = service.get("healthcheck")
        if check is None and "build" in service:
            assert image_check and image_check[-1] != "NONE", f"{name}: no health check in the image either"
            continue
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert stack.services["rabbitmq"]["healthcheck"]["test"][1:] == ["rabbitmq-diagnostics", "-q", "ping"]
    assert "pg_isready" in stack.services["postgres"]["healthcheck"]["test"]
    # The sandbox runs the daemon's image, whose own check asks for a /healthz the sandbox lacks.
    sandbox_check = " ".join(stack.services["sandbox"]["healthcheck"]["test"])
    assert "healthz" not in sandbox_check


def test_the_images_are_the_ones_asked_for(stack: Stack) -> None:
    assert re.fullmatch(r"rabbitmq:[\d.]+-management", stack.services["rabbitmq"]["image"])
    assert re.fullmatch(r"postgres:\d+", stack.services["postgres"]["image"])


@pytest.mark.parametrize("name", ["notifier", "sandbox"])
def test_the_daemon_and_the_sandbox_are_built_from_the_repository_dockerfile(stack: Stack, name: str) -> None:
    build = stack.services[name]["build"]
    if isinstance(build, str):
        build = {"context": build}
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == REPO
    assert (REPO / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE


def _listening_ports(stack: Stack, name: str) -> set[int]:
    service = stack.services[name]
    if name == "sandbox":
        command = [str(part) for part in service["command"]]
        # Only its flags say where it listens (its defaults are loopback, out of the daemon's reach).
        assert flag(command, "--host") in EVERY_INTERFACE, "the sandbox must listen on every interface"
        return {int(port) for port in (flag(command, "--smtp-port"), flag(command, "--api-port")) if port}
    if name == "notifier":
        http, inbound = stack.settings.http, stack.settings.inbound_smtp.listen
        return {http.port} | ({int(inbound.rsplit(":", 1)[1])} if inbound else set())
    image = str(service.get("image", "")).split(":")[0]
    return {IMAGE_PORTS[image]} if image in IMAGE_PORTS else set()


def _named_endpoints(settings: Settings) -> list[tuple[str, str, int]]:
    """(key, host, port) of every server the daemon connects to or tells others to reach."""
    endpoints: list[tuple[str, str, int]] = []
    urls = {"store.url_env": settings.store.resolved_url, "queue.url_env": settings.queue.resolved_url}
    urls |= {f"platforms.{pid}.api.url": p.api.url for pid, p in settings.platforms.items() if p.api}
    if settings.http.public_url:
        urls["http.public_url"] = settings.http.public_url
    for key, url in urls.items():
        parts = urlsplit(url)
        endpoints.append((key, parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme]))
    endpoints.append(("smtp.host", settings.smtp.host, settings.smtp.port))
    if settings.imap.host:
        endpoints.append(("imap.host", settings.imap.host, settings.imap.port))
    return endpoints


def test_every_host_the_configuration_names_is_a_service_listening_on_that_port(stack: Stack) -> None:
    endpoints = _named_endpoints(stack.settings)
    assert {host for _, host, _ in endpoints} >= {"postgres", "rabbitmq", "sandbox"}
    for key, host, port in endpoints:
        assert host in stack.services, f"{key} names {host}, which is not a compose service"
        assert port in _listening_ports(stack, host), f"{key}: {host} does not listen on {port}"


def test_the_sandbox_serves_the_daemons_platforms_and_answers_the_daemon(stack: Stack) -> None:
    sandbox = stack.services["sandbox"]
    command = [str(part) for part in sandbox["command"]]
    environment = environment_of(sandbox)
    # It builds its platforms from the daemon's configuration, which must load in its environment.
    assert config_read_by(command, environment, stack.final_stage) == stack.config_in_image
    load_settings(stack.config_file, environment)
    # Its staff reply to the daemon's inbound SMTP, and sign callbacks with the daemon's secret.
    inbound = flag(command, "--inbound")
    assert inbound, "without --inbound the staff reply to inbound_smtp.listen, their own container"
    host, _, port = inbound.rpartition(":")
    assert host in stack.services
    assert int(port) in _listening_ports(stack, host)
    secret = stack.settings.http.callback_secret_env
    assert environment.get(secret) == stack.environment[secret]


def test_the_daemon_starts_after_every_service_it_names_is_healthy(stack: Stack) -> None:
    depends_on = stack.services["notifier"]["depends_on"]
    for key, host, _ in _named_endpoints(stack.settings):
        if host != "notifier":
            assert depends_on.get(host, {}).get("condition") == "service_healthy", f"{key}: {host}"


def test_store_and_queue_credentials_are_the_ones_the_servers_are_created_with(stack: Stack) -> None:
    store = urlsplit(stack.settings.store.resolved_url)
    postgres = environment_of(stack.services["postgres"])
    assert (store.username, store.password, store.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    queue = urlsplit(stack.settings.queue.resolved_url)
    rabbitmq = environment_of(stack.services["rabbitmq"])
    assert (queue.username, queue.password) == (
        rabbitmq["RABBITMQ_DEFAULT_USER"],
        rabbitmq["RABBITMQ_DEFAULT_PASS"],
    )
    assert queue.path in ("", "/"), "the default vhost is the only one the broker is created with"


def test_secrets_are_compose_variables_not_written_in_the_file(stack: Stack) -> None:
    written = environment_of(stack.raw["services"]["notifier"])
    http = stack.settings.http
    for name in (stack.settings.store.url_env, stack.settings.queue.url_env):
        assert "${" in written[name].split("@")[0], f"{name}: the password is written in the file"
    for name in (http.intake_token_env, http.callback_secret_env):
        assert written[name].startswith("${"), f"{name} is written in the file"


def test_the_ports_agree_between_configuration_image_and_compose(stack: Stack) -> None:
    http = stack.settings.http
    inbound_port = int(stack.settings.inbound_smtp.listen.rsplit(":", 1)[1])
    assert http.host in EVERY_INTERFACE
    assert stack.settings.inbound_smtp.listen.rsplit(":", 1)[0].strip("[]") in EVERY_INTERFACE
    exposed = {int(p.split("/")[0]) for args in args_of(stack.final_stage, "EXPOSE") for p in args.split()}
    assert {http.port, inbound_port} <= exposed
    assert stack.healthcheck_port() == http.port
    notifier = stack.services["notifier"]
    assert {container_port(entry) for entry in notifier["ports"]} == {http.port}
    assert inbound_port in {int(port) for port in notifier.get("expose", [])}


def test_the_daemon_scales_without_port_conflicts(stack: Stack) -> None:
    notifier = stack.services["notifier"]
    assert "container_name" not in notifier and "hostname" not in notifier
    # docs/deployment.md: NOTIFIER_HOST_PORT= (empty) lets Docker give each replica a port of its own.
    scaled = interpolate(stack.raw["services"]["notifier"], {"NOTIFIER_HOST_PORT": ""})
    for entry in scaled["ports"]:
        host_side = str(entry).split(":")[:-1]
        assert not (host_side and host_side[-1]), f"{entry}: a fixed host port cannot be bound twice"


def test_sigterm_drains_before_docker_kills(stack: Stack) -> None:
    grace = stack.settings.runtime.grace
    # Supervisor.wait: the grace period, then cancelled tasks get max(5 s, grace) to hand work back.
    drain = grace + max(timedelta(seconds=5), grace)
    assert parse_duration(stack.services["notifier"]["stop_grace_period"]) > drain


def test_the_manual_outbox_is_on_a_volume(stack: Stack) -> None:
    relative = os.path.relpath(stack.settings.manual.outbox, stack.config_file.parent)
    outbox = PurePosixPath(os.path.normpath(stack.config_in_image.parent / relative))
    volumes = [PurePosixPath(v) for args in args_of(stack.final_stage, "VOLUME") for v in exec_form(args)]
    assert any(outbox.is_relative_to(volume) for volume in volumes), f"{outbox} is not on a VOLUME"
    mounts = [str(entry).split(":")[:2] for entry in stack.services["notifier"].get("volumes", [])]
    named = set(stack.raw.get("volumes") or {})
    assert any(
        len(mount) == 2 and mount[0] in named and outbox.is_relative_to(mount[1]) for mount in mounts
    ), f"compose mounts no named volume over {outbox}"


def test_the_dockerfile_is_multi_stage_and_runs_as_a_fixed_unprivileged_user(stack: Stack) -> None:
    assert len(stack.stages) >= 2
    builder = stack.stages[0]
    assert any("--require-hashes" in run and "requirements.lock" in run for run in args_of(builder, "RUN"))
    assert any(re.search(r"pip install --no-deps \.$", run) for run in args_of(builder, "RUN"))
    names = {i.args.split()[-1] for stage in stack.stages[:-1] for i in stage[:1] if " AS " in i.args.upper()}
    copied_from = {c.split()[0].removeprefix("--from=") for c in args_of(stack.final_stage, "COPY")}
    assert copied_from & names, "the final stage copies nothing from an earlier stage"
    (user,) = args_of(stack.final_stage, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a fixed numeric uid that is not root"
    assert exec_form(args_of(stack.final_stage, "ENTRYPOINT")[-1]) == ["notifier"]


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    patterns = [p for p in patterns if not p.startswith("#")]

    def ignored(name: str) -> bool:
        verdict = False
        for pattern in patterns:  # the last pattern that matches decides, as in Docker
            if fnmatch.fnmatch(name, pattern.removeprefix("!")):
                verdict = not pattern.startswith("!")
        return verdict

    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    for stage in stages:
        for args in args_of(stage, "COPY"):
            if "--from=" in args:
                continue
            for source in [p for p in args.split() if not p.startswith("--")][:-1]:
                top = source.rstrip("/").split("/")[0]
                assert (REPO / top).exists(), f"COPY {source}: no such file in the repository"
                assert not ignored(top), f"COPY {source}: .dockerignore leaves it out of the build context"
    assert ignored(".venv") and ignored("var") and ignored(".git")
