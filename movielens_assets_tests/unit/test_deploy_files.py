"""The deployment files agree with each other: parsed (YAML, the Dockerfile's instructions, the
Makefile's recipe), never grepped. Docker and Kubernetes cannot run here; what they would run is
checked against what the production-topology test does run."""

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from movielens_assets.settings import POSTGRES_VARIABLES
from movielens_assets.tools.runner import DAGSTER_YAML

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DAGSTER_SERVICES = ("migrate", "code-server", "webserver", "daemon")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def snake_keys(value: object) -> object:
    """Helm's camelCase keys as dagster.yaml's snake_case ones, all the way down."""
    if isinstance(value, dict):
        return {snake(key): snake_keys(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def instance() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def helm() -> dict:
    return yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())


def environment(service: dict) -> dict[str, str | None]:
    """A compose service's environment as a dict (list entries without '=' pass through)."""
    env = service.get("environment", {})
    if isinstance(env, dict):
        return {name: str(value) for name, value in env.items()}
    return {
        entry.split("=", 1)[0]: entry.split("=", 1)[1] if "=" in entry else None for entry in env
    }


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of each Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def compose_default(value: str) -> str:
    """``${NAME:-default}`` -> default."""
    match = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    assert match, value
    return match.group(1)


def test_the_instance_reads_its_postgres_connection_from_the_dagster_pg_variables(instance):
    database = instance["storage"]["postgres"]["postgres_db"]
    assert {field: value["env"] for field, value in database.items()} == dict(
        zip(
            ["hostname", "port", "username", "password", "db_name"], POSTGRES_VARIABLES, strict=True
        )
    )


def test_retries_skip_step_failures_and_the_local_instance_has_the_same_run_settings(instance):
    local = yaml.safe_load(DAGSTER_YAML)
    assert instance["run_retries"] == local["run_retries"]
    assert instance["run_retries"]["enabled"] and instance["run_retries"]["max_retries"] > 0
    assert instance["run_retries"]["retry_on_asset_or_op_failure"] is False
    for settings in (instance, local):
        assert settings["run_coordinator"]["class"] == "QueuedRunCoordinator"
        assert settings["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
        assert settings["run_monitoring"]["enabled"] is True
        assert settings["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
        assert "max_concurrent_runs" not in settings.get("run_coordinator", {}).get("config", {})
    assert instance["retention"] == local["retention"]
    assert (
        instance["run_monitoring"]["start_timeout_seconds"]
        == (local["run_monitoring"]["start_timeout_seconds"])
    )


def test_every_compose_service_of_dagster_runs_one_image(compose):
    services = compose["services"]
    images = {services[name]["image"] for name in DAGSTER_SERVICES}
    assert len(images) == 1
    assert services["migrate"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    for name in ("webserver", "daemon"):
        assert services[name]["command"][-2:] == ["-w", "deploy/workspace.yaml"]


def test_compose_migrates_then_gives_the_pools_their_own_limits_before_anything_starts(compose):
    services = compose["services"]
    script = services["migrate"]["command"][-1]
    assert [part.strip() for part in script.split("&&")] == [
        "movielens check-instance",
        "dagster instance migrate",
        "movielens init-pools",
    ]
    # The code server (runs and sensors) waits for it; the webserver and daemon for the server.
    assert services["code-server"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    for name in ("webserver", "daemon"):
        assert set(services[name]["depends_on"]) == {"code-server"}, name


def test_every_dagster_service_gets_the_instance_variables_and_only_the_code_server_more(compose):
    services = compose["services"]
    instance_vars = {*POSTGRES_VARIABLES, "DAGSTER_CODE_SERVER_HOST", "DAGSTER_CODE_SERVER_PORT"}
    for name in ("migrate", "webserver", "daemon"):
        assert set(environment(services[name])) == instance_vars
    code_server = environment(services["code-server"])
    assert instance_vars <= set(code_server)
    assert {name: code_server[name] for name in instance_vars} == environment(services["webserver"])
    # The password comes from .env or the shell, never from the file.
    assert "${DAGSTER_PG_PASSWORD:?" in code_server["DAGSTER_PG_PASSWORD"]


def test_helm_values_use_the_compose_image_and_code_server_arguments(compose, helm):
    image = compose_default(compose["services"]["code-server"]["image"])
    deployment = helm["dagster-user-deployments"]["deployments"][0]
    for values in (helm["dagsterWebserver"], helm["dagsterDaemon"], deployment):
        assert f"{values['image']['repository']}:{values['image']['tag']}" == image
    command = compose["services"]["code-server"]["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    port = command[command.index("-p") + 1]
    assert deployment["port"] == int(port)
    assert deployment["codeServerArgs"] == command[command.index("-m") :]


def test_helm_and_compose_pass_the_pipeline_the_same_variables(compose, helm):
    instance_vars = {*POSTGRES_VARIABLES, "DAGSTER_CODE_SERVER_HOST", "DAGSTER_CODE_SERVER_PORT"}
    compose_vars = set(environment(compose["services"]["code-server"])) - instance_vars
    deployment = helm["dagster-user-deployments"]["deployments"][0]
    assert {entry["name"] for entry in deployment["env"]} == compose_vars
    secrets = {entry["name"] for entry in deployment["env"] if "valueFrom" in entry} | {
        entry["name"] for entry in deployment["env"] if "PASSWORD" in entry["name"]
    }
    assert {"SNOWFLAKE_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= secrets
    for entry in deployment["env"]:
        if re.search("PASSWORD|SECRET|PASSPHRASE", entry["name"]):
            assert "value" not in entry, f"{entry['name']} must come from a Kubernetes secret"


def test_helm_values_carry_the_instance_settings_of_dagster_yaml(instance, helm):
    daemon = helm["dagsterDaemon"]
    monitoring = snake_keys(daemon["runMonitoring"])
    assert monitoring.pop("max_resume_run_attempts") == 0  # fail and retry, never resume
    assert monitoring == instance["run_monitoring"]
    assert snake_keys(daemon["runRetries"]) == instance["run_retries"]
    retention = snake_keys({k: v for k, v in helm["retention"].items() if k != "enabled"})
    assert helm["retention"]["enabled"] is True
    assert retention == instance["retention"]
    assert helm["additionalInstanceConfig"]["concurrency"] == instance["concurrency"]
    assert daemon["runCoordinator"]["type"] == instance["run_coordinator"]["class"]
    assert helm["postgresql"]["enabled"] is False
    assert helm["generatePostgresqlPasswordSecret"] is False


def test_the_image_runs_as_a_non_root_user_with_no_secret_in_a_layer():
    instructions = dockerfile()
    users = [arguments for instruction, arguments in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    for instruction, arguments in instructions:
        if instruction in ("ENV", "ARG"):
            names = re.findall(r"([A-Z_]+)=", arguments) or [arguments.split("=")[0]]
            assert not [n for n in names if re.search("PASSWORD|SECRET|TOKEN|PASSPHRASE", n)]
    copies = [
        shlex.split(arguments) for instruction, arguments in instructions if instruction == "COPY"
    ]
    assert [
        c
        for c in copies
        if c[-2:] == ["deploy/dagster.yaml", "/opt/dagster/dagster_home/dagster.yaml"]
    ]
    env = " ".join(arguments for instruction, arguments in instructions if instruction == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env


def test_the_image_builds_the_manifest_with_the_makefiles_command():
    makefile = (REPO / "Makefile").read_text().splitlines()
    recipe = makefile[
        makefile.index(next(line for line in makefile if line.startswith("manifest:"))) + 1
    ]
    make_command = shlex.split(recipe.strip().replace("$(BIN)/", ""))
    runs = [shlex.split(args) for instruction, args in dockerfile() if instruction == "RUN"]
    assert make_command in runs
    assert make_command[:2] == ["dagster-dbt", "project"]


def test_the_image_starts_the_code_server_as_compose_does(compose):
    cmd = json.loads(next(args for instruction, args in dockerfile() if instruction == "CMD"))
    assert cmd == compose["services"]["code-server"]["command"]


def test_the_workspace_loads_the_code_location_from_the_code_server():
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == {"env": "DAGSTER_CODE_SERVER_HOST"}
    assert server["port"] == {"env": "DAGSTER_CODE_SERVER_PORT"}
    assert server["location_name"] == "movielens"


def test_postgres_storage_and_its_sqlalchemy_are_pinned():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "dagster-postgres==0.29.27" in dependencies
    assert any(re.fullmatch(r"sqlalchemy[>=<.,\d]*<2\.1", d.replace(" ", "")) for d in dependencies)
