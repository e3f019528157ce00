"""Ten everyday changes, each one edit (plus `make generate`) in the files it names.

Each EDITS entry makes its change on a copy of the repository (a git checkout of the working
tree's files), touching exactly the files it lists; then `generate.py` writes what follows and
`generate.py --check` must pass, as a user would. A second place that also needs editing by hand
fails it. Two depths, because the whole suite on ten copies takes about half an hour on two
cores:

- `make test`: the ten edits on one copy (they touch different places; each is checked to touch
  only its own files), `generate.py` and its check once, then each edit's `follows` (what must
  change with it: the templates, every environment's effective values, the files derived from
  the contract, the tools that read them) and, in one run, the test files closest to the ten
  (`tests`). About a minute: cheaper than one copy per edit, which costs a generate and a test
  run each.
- `make one-edit` (ONE_EDIT_SUITE=1): each edit alone on its own copy, `generate.py`, its
  check and its `follows`, then the whole suite without the slow tests (`-m "not slow and not
  engine"`) in that copy. That is the proof that each edit needs nothing else.

What an edit writes is derived from the source it edits (the next free WAF priority, a GPU type
and a model that are not there yet, twice the current longest generation), so the edits keep
working as those values move.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import contract
from stacks import endpoints, gpu
from tools import params

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
WHOLE_SUITE = os.environ.get("ONE_EDIT_SUITE") == "1"


# --- the copy --------------------------------------------------------------------------------


def source_files() -> list[str]:
    """Tracked files and new ones not ignored: what a commit of the working tree would hold."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True, text=True).stdout
    return sorted({name for name in listed.split("\0") if name and (REPO / name).is_file()})


def git(copy: Path, *argv: str) -> str:
    return subprocess.run(["git", "-c", "user.name=one-edit", "-c", "user.email=one-edit@invalid",
                           *argv], cwd=copy, capture_output=True, check=True, text=True).stdout


@contextlib.contextmanager
def fresh_copy() -> Iterator[Path]:
    """A git checkout of the working tree under /var/tmp (mode 0755: the container-start test
    runs the gateway from it as uid 10001), with the shared environments and caches linked."""
    place = Path(tempfile.mkdtemp(prefix="one-edit-", dir="/var/tmp"))  # noqa: S108
    place.chmod(0o755)
    target = place / "repo"
    try:
        for name in source_files():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
        git(target, "init", "-q", "-b", "main")
        (target / ".git" / "info" / "exclude").write_text(".venv\n.venv-checkov\n.cache/\n")
        git(target, "add", "-A")
        git(target, "commit", "-q", "-m", "before the edit")
        # Not source: the virtualenvs, cfn-guard and its rules (checksum-verified), the
        # gateway's runtime venv of the image tests, and the docs fingerprints (so unchanged
        # sections are not produced again).
        for linked in (".venv", ".venv-checkov", ".cache/cfn-guard", ".cache/images"):
            if (REPO / linked).exists():
                (target / linked).parent.mkdir(parents=True, exist_ok=True)
                (target / linked).symlink_to((REPO / linked).resolve())
        if (REPO / ".cache" / "docs-sections.json").is_file():
            shutil.copy2(REPO / ".cache" / "docs-sections.json", target / ".cache")
        yield target
    finally:
        shutil.rmtree(place, ignore_errors=True)


@pytest.fixture
def copy() -> Iterator[Path]:
    with fresh_copy() as target:
        yield target


def run(copy: Path, *argv: str, timeout: float = 600) -> str:
    """python argv in the copy, as a user runs it there; its stdout (fails on exit != 0)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           # the review's node package and its renderings, keyed by content: shared
           "TEMPLATE_REVIEW_CACHE": str(REPO / ".cache" / "review")}
    result = subprocess.run([sys.executable, *argv], cwd=copy, capture_output=True, text=True,
                            timeout=timeout, check=False, env=env)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
    return result.stdout


def pytest_in(copy: Path, *args: str, timeout: float = 3600) -> str:
    # langsmith's plugin (installed for the client tests) serves no test here; it costs a second
    # of start-up per run.
    return run(copy, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p",
               "no:langsmith_plugin", *args, timeout=timeout)


def value_in(copy: Path, expression: str, *imports: str) -> object:
    """The JSON value of expression, computed by the copy's own code (its last output line:
    what runs before it may print, e.g. the gateway's access log)."""
    code = "; ".join([*imports, f"import json; print(json.dumps({expression}))"])
    return json.loads(run(copy, "-c", code).splitlines()[-1])


def template(root: Path, name: str) -> dict:
    return json.loads((root / "templates" / name).read_text())


def resources(root: Path, name: str, kind: str) -> dict[str, dict]:
    return {lid: r for lid, r in template(root, name)["Resources"].items() if r["Type"] == kind}


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected {old!r} once"
    path.write_text(text.replace(old, new))


def environment_of(root: Path, container: str) -> dict[str, str]:
    definitions = template(root, "service.json")["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"]
    found = next(c for c in definitions if c["Name"] == container)
    return {e["Name"]: e["Value"] for e in found.get("Environment", [])}


def cost_bases(root: Path) -> dict[str, dict[str, str]]:
    """env -> component -> basis of the monthly estimate, as root's own tools/cost computes it
    (computed once per tree and content: several checks read it)."""
    key = (str(root), digest(root, "templates", "params", "prices"))
    if key not in _COSTS:
        _COSTS[key] = value_in(root, "{e: {x.component: x.basis for x in "
                               "report.estimate_env(e).lines} for e in params.environments()}",
                               "from tools import params", "from tools.cost import report")
    return _COSTS[key]


_COSTS: dict[tuple[str, str], dict[str, dict[str, str]]] = {}


def digest(root: Path, *directories: str) -> str:
    hasher = hashlib.sha256()
    for directory in directories:
        for path in sorted((root / directory).glob("*.json")):
            hasher.update(path.name.encode() + b"\0" + path.read_bytes())
    return hasher.hexdigest()


def first_number(text: str) -> int:
    return int(re.search(r"\d+", text).group())  # type: ignore[union-attr]


# --- the ten edits ---------------------------------------------------------------------------

LONGER = contract.TIMEOUTS.max_generation_seconds * 2


def longer_generation(copy: Path) -> None:
    replace_once(copy / "app" / "contract.py",
                 f"    max_generation_seconds: int = {contract.TIMEOUTS.max_generation_seconds}\n",
                 f"    max_generation_seconds: int = {LONGER}\n")


def longer_generation_follows(copy: Path) -> None:
    budget = value_in(copy, "{k: getattr(TIMEOUTS, k) for k in ('alb_idle_timeout_seconds', "
                      "'deregistration_delay_seconds', 'keep_alive_seconds')}",
                      "from app.contract import TIMEOUTS")
    assert budget["alb_idle_timeout_seconds"] > contract.TIMEOUTS.alb_idle_timeout_seconds
    attributes = {}
    for resource in template(copy, "load_balancer.json")["Resources"].values():
        for key in ("LoadBalancerAttributes", "TargetGroupAttributes"):
            attributes.update({a["Key"]: a["Value"] for a in resource.get("Properties", {}).get(key, [])
                               if isinstance(a, dict) and "Key" in a})
    assert attributes["idle_timeout.timeout_seconds"] == str(budget["alb_idle_timeout_seconds"])
    assert attributes["deregistration_delay.timeout_seconds"] == str(
        budget["deregistration_delay_seconds"])
    keep_alive = str(budget["keep_alive_seconds"])
    assert environment_of(copy, "gateway")["UVICORN_TIMEOUT_KEEP_ALIVE"] == keep_alive
    assert f"UVICORN_TIMEOUT_KEEP_ALIVE={keep_alive}\n" in (copy / "gateway.env").read_text()
    assert f"| longest generation | {LONGER} |" in (copy / "docs" / "infrastructure.md").read_text()


NEW_ENDPOINT = ("SsmMessagesEndpoint", "ssmmessages")  # ECS Exec's channel, off NAT


def new_endpoint(copy: Path) -> None:
    assert NEW_ENDPOINT not in endpoints.INTERFACE_SERVICES
    last = endpoints.INTERFACE_SERVICES[-1]
    replace_once(copy / "stacks" / "endpoints.py", f"    {last!r},\n".replace("'", '"'),
                 f"    {last!r},\n    {NEW_ENDPOINT!r},\n".replace("'", '"'))


def new_endpoint_follows(copy: Path) -> None:
    found = resources(copy, "endpoints.json", "AWS::EC2::VPCEndpoint")
    assert len(found) == len(endpoints.INTERFACE_SERVICES) + 1
    assert found[NEW_ENDPOINT[0]]["Properties"]["ServiceName"] == {
        "Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{NEW_ENDPOINT[1]}"}
    # Where the endpoints are on, the estimate counts it (from the rendering of that env).
    on = [env for env in params.environments() if params.load_env(env)["InterfaceEndpoints"] == "true"]
    assert on, "no environment with InterfaceEndpoints=true to check"
    costs = cost_bases(copy)
    for env in on:
        line = costs[env]["Interface endpoints (hourly)"]
        assert first_number(line) == len(endpoints.INTERFACE_SERVICES) + 1, line
        assert NEW_ENDPOINT[1] in line


# A new model is two facts: its name (the contract) and the size of its blob, which the wake
# budget reads its load time from (stacks/wake.py MODEL_SIZES_MIB). Sizes as the Ollama library
# lists them (ollama.com/library/qwen2.5, gemma3: 398 MB, 815 MB), in MiB.
NEW_MODEL, NEW_MODEL_MIB = next(m for m in (("qwen2.5:0.5b", 380), ("gemma3:1b", 778))
                                if m[0] != contract.DEFAULT_MODEL)


def new_model(copy: Path) -> None:
    replace_once(copy / "app" / "contract.py", f'DEFAULT_MODEL = "{contract.DEFAULT_MODEL}"\n',
                 f'DEFAULT_MODEL = "{NEW_MODEL}"\n')
    replace_once(copy / "stacks" / "wake.py", "MODEL_SIZES_MIB = {",
                 f'MODEL_SIZES_MIB = {{"{NEW_MODEL}": {NEW_MODEL_MIB}, ')


def new_model_follows(copy: Path) -> None:
    # Every environment that does not name its own model serves the new default.
    effective = value_in(copy, "{e: params.load_env(e)['ModelName'] for e in params.environments()}",
                         "from tools import params")
    for env, model in effective.items():
        expected = params.load(copy / "params" / f"{env}.json").get("ModelName", NEW_MODEL)
        assert model == expected, env
    assert template(copy, "root.json")["Parameters"]["ModelName"]["Default"] == NEW_MODEL
    assert f"GATEWAY_MODELS={NEW_MODEL}\n" in (copy / "gateway.env").read_text()
    compose = (copy / "docker-compose.yml").read_text()
    assert contract.DEFAULT_MODEL not in compose and compose.count(f":-{NEW_MODEL}}}") >= 4
    assert f"OLLAMA_MODEL={NEW_MODEL}\n" in (copy / ".env.example").read_text()
    assert f"ARG MODEL={NEW_MODEL}\n" in (copy / "ollama" / "Dockerfile").read_text()


NEW_GPU_TYPE = next(t for t in ("p5.48xlarge", "p4d.24xlarge") if t not in gpu.GPUS_PER_INSTANCE)
NEW_GPU_COUNT = 8
PRICES = "prices/us-east-1.json"


def new_gpu_type(copy: Path) -> None:
    replace_once(copy / "stacks" / "gpu.py", "GPUS_PER_INSTANCE: dict[str, int] = {\n",
                 "GPUS_PER_INSTANCE: dict[str, int] = {\n"
                 f'    "{NEW_GPU_TYPE}": {NEW_GPU_COUNT},  # added by tests/test_one_edit.py\n')
    book = json.loads((copy / PRICES).read_text())
    model = json.loads(json.dumps(book["prices"][f"ec2.{gpu.DEFAULT_INSTANCE_TYPE}"]))
    model["query"]["filters"]["instanceType"] = NEW_GPU_TYPE
    model.update(usd=50.0, what=f"{NEW_GPU_TYPE} Linux On-Demand (a price made by the test)")
    book["prices"][f"ec2.{NEW_GPU_TYPE}"] = model
    (copy / PRICES).write_text(json.dumps(book, indent=2, ensure_ascii=False) + "\n")


def new_gpu_type_follows(copy: Path) -> None:
    allowed = template(copy, "cluster.json")["Parameters"]["InstanceType"]["AllowedValues"]
    assert NEW_GPU_TYPE in allowed
    env = params.environments()[0]
    probe = (f"v = params.load_env({env!r}) | {{'InstanceType': {NEW_GPU_TYPE!r}}}; "
             f"s = rollout.sizing({env!r}, v); f = facts.collect({env!r}, values=v); "
             "e = estimate.build(f, prices.load(f.region), estimate.assumptions())")
    found = value_in(copy, "[s.gpus_per_instance, s.problems(), "
                     "next(x.basis for x in e.lines if x.component.startswith('GPU instances'))]",
                     "from tools import params, rollout",
                     "from tools.cost import estimate, facts, prices", probe)
    assert found[0] == NEW_GPU_COUNT and found[1] == []
    assert f"{NEW_GPU_TYPE} at $50.0/h" in found[2], found[2]


NEW_ROUTE = ("/", "GET")  # Ollama's root ("Ollama is running"), which clients probe


def new_route(copy: Path) -> None:
    replace_once(copy / "app" / "routers" / "ollama.py", '@router.get("/api/version"', '''\
@router.get("/", summary="Ollama's root ('Ollama is running'), which clients probe",
            responses={**responses(OLLAMA, schemas.OllamaVersionResponse, generation=False),
                       200: {"description": "Ollama's answer, passed through.",
                             "content": {"text/plain": {}}}})
async def root(request: Request) -> Response:
    return listing(request, "/", None)


@router.get("/api/version"''')
    # The route allowlist is a literal on purpose (a security review sees every new route).
    replace_once(copy / "tests" / "app" / "test_middleware.py", "EXPECTED_ROUTES = {\n",
                 f"EXPECTED_ROUTES = {{\n    {NEW_ROUTE!r},\n".replace("'", '"'))


def new_route_follows(copy: Path) -> None:
    probe = ("from fastapi.testclient import TestClient; from app.factory import create_app; "
             "from tests.app.harness import gateway_settings; "
             "app = create_app(gateway_settings('http://127.0.0.1:9')); "
             "client = TestClient(app); document = app.openapi()")
    found = value_in(copy, "[client.get('/').status_code, sorted(document['paths']['/'])]", probe)
    assert found == [401, ["get"]]  # routed, and behind the key like every Ollama route


def new_alarm(copy: Path) -> None:
    module = copy / "stacks" / "monitoring.py"
    imported = re.search(r"^from app\.contract import (.+)$", module.read_text(), re.MULTILINE)
    assert imported, "stacks/monitoring.py: no one-line import from app.contract"
    names = sorted({*imported.group(1).split(", "), "REQUEST_LATENCY"})
    replace_once(module, imported.group(0),
                 "from app.contract import (\n" + "".join(f"    {n},\n" for n in names) + ")")
    replace_once(module, "\n        return topic\n", '''
        alarm("RequestLatencyAlarm", "Request latency p95 is above 2 minutes",
              METRIC_NAMESPACE, REQUEST_LATENCY.name, service_dims, 120000,
              periods=3, period=300, extended="p95")
        return topic
''')


def new_alarm_follows(copy: Path) -> None:
    alarms = resources(copy, "monitoring.json", "AWS::CloudWatch::Alarm")
    added = alarms["RequestLatencyAlarm"]["Properties"]
    assert added["MetricName"] == contract.REQUEST_LATENCY.name
    assert added["AlarmActions"] == alarms["Target5xxAlarm"]["Properties"]["AlarmActions"]
    before, after = cost_bases(REPO), cost_bases(copy)
    for env in params.environments():
        counts = [first_number(side[env]["CloudWatch alarms"]) for side in (before, after)]
        assert counts[1] == counts[0] + 1, env


NEW_WAF_RULE = "AWSManagedRulesAmazonIpReputationList"


def waf_rule(copy: Path) -> None:
    module = copy / "stacks" / "load_balancer.py"
    calls = list(re.finditer(r"^( +)managed\((\d+), .*\),\n", module.read_text(), re.MULTILINE))
    assert calls and NEW_WAF_RULE not in module.read_text()
    last = calls[-1]
    priority = max(int(c.group(2)) for c in calls) + 1
    replace_once(module, last.group(0),
                 last.group(0) + f'{last.group(1)}managed({priority}, "{NEW_WAF_RULE}"),\n')


def waf_rule_follows(copy: Path) -> None:
    rules = template(copy, "load_balancer.json")["Resources"]["WebAcl"]["Properties"]["Rules"]
    before = template(REPO, "load_balancer.json")["Resources"]["WebAcl"]["Properties"]["Rules"]
    assert [r["Name"] for r in rules] == [r["Name"] for r in before] + [NEW_WAF_RULE]
    assert len({r["Priority"] for r in rules}) == len(rules)
    on = [env for env in params.environments() if params.load_env(env)["Waf"] == "true"]
    assert on, "no environment with Waf=true to check"
    costs = cost_bases(copy)
    for env in on:
        assert f"{len(rules)} rules" in costs[env]["WAF"], costs[env]["WAF"]


def staging(copy: Path) -> None:
    shutil.copy2(copy / "params" / "prod.json", copy / "params" / "staging.json")


def staging_follows(copy: Path) -> None:
    assert "| staging |" in (copy / "docs" / "parameters.md").read_text()
    assert "staging" in run(copy, "-m", "tools.rollout")
    run(copy, "-m", "tools.render", "--env", "staging", "--out", str(copy / "rendered"))
    assert "PASSED" in run(copy, "-m", "tools.security_gate", "--env", "staging")
    assert "staging" in run(copy, "-m", "tools.deploy", "deploy", "--help")
    assert "total" in run(copy, "-m", "tools.cost", "staging")
    # Not production unless its companion file says so (stack termination protection).
    assert not params.environment("staging", copy / "params").production


SETTING = "GATEWAY_RETRY_BUDGET"


def ssm_setting(copy: Path) -> None:
    end = "\n)\n\nSETTINGS_BY_ENV"
    replace_once(copy / "app" / "contract.py", end, (
        f'\n    Setting("{SETTING}", "int", 3, Source.SSM,\n'
        '            "Retries a request may spend (added by tests/test_one_edit.py).", above=0),'
        + end))


def ssm_setting_follows(copy: Path) -> None:
    config = template(copy, "config.json")
    names = {json.dumps(r["Properties"]["Name"]): r["Properties"]["Value"]
             for r in config["Resources"].values() if r["Type"] == "AWS::SSM::Parameter"}
    assert names[json.dumps({"Fn::Sub": f"/${{ProjectName}}/${{EnvironmentName}}/{SETTING}"})] == "3"
    definitions = template(copy, "service.json")["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"]
    gateway = next(c for c in definitions if c["Name"] == "gateway")
    assert SETTING in {s["Name"] for s in gateway["Secrets"]}
    assert SETTING not in environment_of(copy, "gateway")
    assert f"{SETTING}=3\n" in (copy / "gateway.env").read_text()
    assert f'retry_budget: int = declared("{SETTING}")' in (copy / "app" / "settings.py").read_text()
    # The gateway reads it, typed, with its bound.
    probe = (f"import os; os.environ['{SETTING}'] = '9'; "
             "from app.settings import load_settings; print(load_settings().retry_budget + 1)")
    assert run(copy, "-c", probe).strip() == "10"
    refused = run(copy, "-c", "from app.settings import load_settings, ConfigurationError\n"
                              "try:\n    load_settings(retry_budget=0)\n"
                              "except ConfigurationError as e:\n    print(e)")
    assert f"{SETTING} must be greater than 0" in refused
    run(copy, "-m", "mypy")


NEW_PARAMETER = "Target5xxAlarmCount"


def new_parameter(copy: Path) -> None:
    module = copy / "stacks" / "monitoring.py"
    threshold = re.search(r'"HTTPCode_Target_5XX_Count", target_group, (\d+),', module.read_text())
    assert threshold and NEW_PARAMETER not in module.read_text()
    replace_once(module, threshold.group(0),
                 f'"HTTPCode_Target_5XX_Count", target_group,\n              Ref("{NEW_PARAMETER}"),')
    replace_once(module, "            number(TTFT_THRESHOLD,", (
        f'            number("{NEW_PARAMETER}", "Alarm when the targets answer this many 5xx '
        f'in a minute",\n                   default={threshold.group(1)}, min_value=1),\n'
        "            number(TTFT_THRESHOLD,"))


def new_parameter_follows(copy: Path) -> None:
    declared = template(copy, "root.json")["Parameters"][NEW_PARAMETER]
    alarm = template(copy, "monitoring.json")["Resources"]["Target5xxAlarm"]["Properties"]
    assert alarm["Threshold"] == {"Ref": NEW_PARAMETER}
    # No params file names it: every environment deploys with the declared default.
    for env in params.environments():
        printed = params.parse(run(copy, "-m", "tools.params", env), "stdout")
        assert printed[NEW_PARAMETER] == str(declared["Default"]), env
    assert git(copy, "diff", "--name-only", "--", "params") == ""  # no params file edited


@dataclass(frozen=True)
class Edit:
    name: str
    files: tuple[str, ...]  # the only files the edit touches
    apply: Callable[[Path], None]
    follows: Callable[[Path], None]  # what must follow, checked after generate.py
    tests: tuple[str, ...]  # make test: the test files closest to the change


EDITS = (
    Edit("a longer generation", ("app/contract.py",), longer_generation, longer_generation_follows,
         ("tests/app/test_contract.py", "tests/images/test_parity.py",
          "tests/tools/deploy/test_wakecheck.py")),
    Edit("a new VPC endpoint", ("stacks/endpoints.py",), new_endpoint, new_endpoint_follows,
         ("tests/stacks/test_network.py", "tests/stacks/test_security.py")),
    Edit("a new default model", ("app/contract.py", "stacks/wake.py"), new_model, new_model_follows,
         ("tests/images/test_dockerfiles.py", "tests/images/test_parity.py",
          "tests/tools/test_contract_files.py", "tests/tools/deploy/test_images.py")),
    Edit("a new GPU type", ("stacks/gpu.py", PRICES), new_gpu_type, new_gpu_type_follows,
         ("tests/tools/test_rollout.py",)),
    Edit("a new route", ("app/routers/ollama.py", "tests/app/test_middleware.py"), new_route,
         new_route_follows, ("tests/app/test_middleware.py", "tests/app/test_openapi.py")),
    Edit("a new alarm", ("stacks/monitoring.py",), new_alarm, new_alarm_follows,
         ("tests/stacks/test_monitoring.py",)),
    Edit("a WAF rule", ("stacks/load_balancer.py",), waf_rule, waf_rule_follows,
         ("tests/stacks/test_load_balancer.py",)),
    Edit("a staging environment", ("params/staging.json",), staging, staging_follows,
         ("tests/stacks/test_root.py", "tests/tools/test_params.py")),
    Edit("a gateway setting read from SSM", ("app/contract.py",), ssm_setting, ssm_setting_follows,
         ("tests/app/test_settings.py", "tests/app/test_contract.py", "tests/images/test_parity.py",
          "tests/stacks/test_config.py")),
    Edit("a new tunable parameter", ("stacks/monitoring.py",), new_parameter,
         new_parameter_follows, ("tests/stacks/test_root.py", "tests/tools/test_params.py",
                                 "tests/tools/test_reference.py")),
)
IDS = [edit.name.replace(" ", "-") for edit in EDITS]


def snapshot(copy: Path) -> dict[str, bytes]:
    """Every file of the copy that git sees as changed or new, with its content."""
    listed = git(copy, "ls-files", "-z", "--modified", "--others", "--exclude-standard")
    return {name: (copy / name).read_bytes() for name in listed.split("\0")
            if name and (copy / name).is_file()}


def apply(copy: Path, edit: Edit) -> None:
    """The edit, checked to touch exactly the files it names."""
    before = snapshot(copy)
    edit.apply(copy)
    after = snapshot(copy)
    touched = {name for name in set(before) | set(after) if before.get(name) != after.get(name)}
    assert touched == set(edit.files), f"{edit.name}: touched {sorted(touched)}"


def generate(copy: Path) -> None:
    """What a user runs after the edit: make generate, then the check CI runs."""
    run(copy, "generate.py")
    run(copy, "generate.py", "--check")


@pytest.fixture(scope="module")
def edited() -> Iterator[Path]:
    """One copy with the ten edits made, each checked for its own files, then generate.py."""
    with fresh_copy() as target:
        for edit in EDITS:
            apply(target, edit)
        generate(target)
        yield target


@pytest.mark.timeout(600)  # the first one also makes the copy and runs generate.py
@pytest.mark.parametrize("edit", EDITS, ids=IDS)
def test_what_the_edit_must_change_follows_from_it(edited, edit):
    started = time.monotonic()
    edit.follows(edited)
    print(f"{edit.name} ({', '.join(edit.files)}): follows ({time.monotonic() - started:.0f} s)")


@pytest.mark.timeout(600)
def test_the_tests_closest_to_the_edits_pass_on_the_edited_copy(edited):
    closest = sorted({name for edit in EDITS for name in edit.tests})
    out = pytest_in(edited, "-m", "not slow and not engine", *closest)
    print(f"{len(closest)} test files in the edited copy: {out.strip().splitlines()[-1]}")


@pytest.mark.skipif(not WHOLE_SUITE, reason="make one-edit runs it (each edit alone, whole suite)")
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("edit", EDITS, ids=IDS)
def test_the_whole_suite_passes_after_the_edit_alone(copy, edit):
    started = time.monotonic()
    apply(copy, edit)
    generate(copy)
    edit.follows(copy)
    # Ten suites back to back share two cores with whatever else runs: the per-test timeout of
    # setup.cfg guards against a hang, not against a busy machine, so it is longer here.
    out = pytest_in(copy, "-m", "not slow and not engine", "-o", "timeout=900")
    print(f"{edit.name} ({', '.join(edit.files)}): whole suite (not slow) in its copy: "
          f"{out.strip().splitlines()[-1]} ({time.monotonic() - started:.0f} s)")
