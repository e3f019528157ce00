"""Run the real deploy steps against moto in server mode on 127.0.0.1, with no AWS account.

The rehearsal starts the patched moto server (tests/rehearsal/moto_adapter.py) as a child
process on a free port, runs `python -m tools.deploy bootstrap ENV` and
`python -m tools.deploy deploy ENV --rehearsal` as subprocesses (the same commands
`make bootstrap/deploy` run, so the AWS CLI's package and deploy run for real), and always stops
the server. The tests then read what was created through the AWS APIs, as a user would.

Two values are the rehearsal's own, because what they name exists only in the real account:
when params/ENV.json asks for a DNS record, the rehearsal creates a Route 53 zone for the
domain's parent in the emulator and passes its ID (`--parameter HostedZoneId=...`); when it
names an existing certificate (CertificateArn), the rehearsal requests one in the emulator and
passes that ARN instead.

REHEARSAL_TEMPLATES=DIR rehearses templates from DIR instead of templates/;
REHEARSAL_VERBOSE=1 (make rehearse) echoes every step's output as it runs.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tools import params as params_file
from tools.deploy.apply import PLACEHOLDER_TAG

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
VERBOSE = os.environ.get("REHEARSAL_VERBOSE") == "1"


def templates_dir() -> Path:
    return Path(os.environ.get("REHEARSAL_TEMPLATES") or REPO / "templates")


@contextmanager
def moto_server(log_path: Path, start_timeout: float = 60):
    """Start the patched moto server on 127.0.0.1 (free port); yield the port; always stop it."""
    log = log_path.open("w")
    process = subprocess.Popen(  # noqa: S603 (our own module, fixed argv)
        [sys.executable, "-m", "tests.rehearsal.moto_adapter"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + start_timeout
        line = ""
        while not line.startswith("PORT=") and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if selector.select(timeout=0.5):
                line = process.stdout.readline()
        if not line.startswith("PORT="):
            log.flush()
            raise RuntimeError(f"moto server did not start: {log_path.read_text()[-2000:]}")
        yield int(line.strip().split("=", 1)[1])
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def aws_environment(port: int) -> dict[str, str]:
    """The environment of every step: fake credentials, the emulator, nothing from this machine."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        # localhost, not 127.0.0.1: moto reads a nested TemplateURL only by that host name.
        "AWS_ENDPOINT_URL": f"http://localhost:{port}",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
    })
    return env


@dataclass
class Step:
    args: list[str]
    returncode: int
    output: str  # stdout and stderr, interleaved as printed


@dataclass
class Rehearsal:
    env: str
    workdir: Path
    templates: Path = field(default_factory=templates_dir)
    port: int = 0
    steps: list[Step] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def params(self) -> dict[str, str]:
        return params_file.load_env(self.env)

    @property
    def transcript(self) -> str:
        return "\n".join(f"$ python -m tools.deploy {' '.join(s.args)}\n{s.output}"
                         f"[exit {s.returncode}]" for s in self.steps)

    def start(self) -> Rehearsal:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self._stack.enter_context(moto_server(self.workdir / "moto.log"))
        return self

    def close(self) -> None:
        self._stack.close()
        (self.workdir / "transcript.log").write_text(self.transcript)

    def __enter__(self) -> Rehearsal:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=f"http://localhost:{self.port}",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def step(self, *args: str, timeout: float = 300) -> Step:
        command = [sys.executable, "-m", "tools.deploy", *args]
        if VERBOSE:
            print(f"\n$ python -m tools.deploy {' '.join(args)}", flush=True)
        process = subprocess.Popen(command, cwd=REPO, env=aws_environment(self.port),  # noqa: S603
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if VERBOSE:
                print(line, end="", flush=True)
        process.wait(timeout=timeout)
        result = Step(list(args), process.returncode, "".join(lines))
        self.steps.append(result)
        return result

    def prepare_account(self) -> None:
        """Stand-ins for what the params file expects to exist in the account already: the
        Route 53 zone of DomainName's parent, and an existing certificate (CertificateArn)."""
        values = self.params
        domain = values.get("DomainName", "")
        if values.get("CreateDnsRecord") == "true" and domain and "HostedZoneId" in values:
            parent = domain.split(".", 1)[1] if domain.count(".") > 1 else domain
            zone = self.client("route53").create_hosted_zone(
                Name=parent, CallerReference=f"rehearsal-{self.env}")["HostedZone"]["Id"]
            self.overrides["HostedZoneId"] = zone.rsplit("/", 1)[-1]
        if values.get("CertificateArn"):
            # An existing certificate is an issued one (preflight checks that): imported, so
            # moto reports ISSUED as ACM does for an imported certificate.
            certificate, key = self_signed(domain or "rehearsal.example.com")
            self.overrides["CertificateArn"] = self.client("acm").import_certificate(
                Certificate=certificate, PrivateKey=key)["CertificateArn"]

    def cli_deploy(self, directory: Path) -> Step:
        """The README's manual path, the plain AWS CLI: `aws cloudformation package`, the
        params file plus the deploy-time values in a copy, `aws cloudformation deploy`."""
        project = self.params["ProjectName"]
        bucket = f"{project}-{self.env}-artifacts-{ACCOUNT}-{REGION}"
        packaged, values = directory / "packaged.json", directory / f"{self.env}.json"
        merged = {"RepositoryPrefix": f"{project}-{self.env}", **self.params,
                  "ImageTag": PLACEHOLDER_TAG, **self.overrides}
        values.write_text(params_file.render(merged))
        commands = [
            ["cloudformation", "package", "--template-file", str(self.templates / "root.json"),
             "--s3-bucket", bucket, "--s3-prefix", self.env, "--output-template-file",
             str(packaged), "--use-json"],
            ["cloudformation", "deploy", "--template-file", str(packaged), "--stack-name",
             f"{project}-{self.env}", "--parameter-overrides", f"file://{values}",
             "--capabilities", "CAPABILITY_IAM", "CAPABILITY_NAMED_IAM",
             "--tags", f"Project={project}", f"Environment={self.env}",
             "--no-fail-on-empty-changeset"],
        ]
        output, code = "", 0
        for command in commands:
            result = subprocess.run([str(Path(sys.executable).parent / "aws"), *command],  # noqa: S603
                                    cwd=REPO, env=aws_environment(self.port), text=True,
                                    capture_output=True, timeout=300, check=False)
            output += f"$ aws {' '.join(command)}\n{result.stdout}{result.stderr}"
            code = result.returncode
            if code:
                break
        step = Step(["(aws cli)", self.env], code, output)
        self.steps.append(step)
        return step

    def deploy_args(self) -> list[str]:
        args = ["deploy", self.env, "--rehearsal", "--templates", str(self.templates)]
        for key, value in self.overrides.items():
            args += ["--parameter", f"{key}={value}"]
        return args

    def run(self) -> Rehearsal:
        """bootstrap then deploy (its preflight included); stops at the first failing step."""
        self.prepare_account()
        if self.step("bootstrap", self.env, "--templates", str(self.templates)).returncode == 0:
            self.prepare_for_preflight()
            self.step(*self.deploy_args())
        return self

    def prepare_for_preflight(self, tag: str = PLACEHOLDER_TAG) -> None:
        """What deploy's preflight reads and moto cannot give: the ec2 quotas (moto's Service
        Quotas knows only `vpc`) and the images `make images` would have pushed."""
        for code, name, value in QUOTAS:
            set_service_quota(self.port, "ec2", code, name, value)
        if {**self.params, **self.overrides}.get("SpotInstances") == "true":
            set_service_quota(self.port, "ec2", *SPOT_QUOTA)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in self.client(
            "cloudformation").describe_stacks(StackName=f"{self.params['ProjectName']}-"
                                              f"{self.env}-registry")["Stacks"][0]["Outputs"]}
        for image in ("Gateway", "Ollama"):
            push_image_manifest(self, outputs[f"{image}RepositoryName"], tag)

    @property
    def succeeded(self) -> bool:
        return len(self.steps) >= 2 and all(s.returncode == 0 for s in self.steps[:2])


def self_signed(domain: str) -> tuple[bytes, bytes]:
    """A PEM certificate and key for domain (valid for a day): what an imported one looks like."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), False)
                   .sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


# The account the rehearsal stands in for: room for dev and prod (test_preflight.py sets its own).
QUOTAS = (("L-DB2E81BA", "Running On-Demand G and VT instances", 256),
          ("L-0263D0A3", "EC2-VPC Elastic IPs", 5))
# Set only when a rehearsal runs with SpotInstances=true (tools/preflight/capacity.py).
SPOT_QUOTA = ("L-3819A6DF", "All G and VT Spot Instance Requests", 64)


def copy_templates(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def load_template(directory: Path, name: str) -> dict:
    return json.loads((directory / name).read_text())


# ---------------------------------------------------------------------------------------------
# Preflight (python -m tools.preflight ENV) against the emulator
# ---------------------------------------------------------------------------------------------


def preflight(rehearsal: Rehearsal, *args: str, timeout: float = 120) -> Step:
    """Run `python -m tools.preflight ENV ARGS` (what `make preflight ENV=...` runs) against
    the rehearsal's emulator; recorded in its transcript like a deploy step."""
    command = [sys.executable, "-m", "tools.preflight", rehearsal.env, *args]
    if VERBOSE:
        print(f"\n$ python -m tools.preflight {rehearsal.env} {' '.join(args)}", flush=True)
    result = subprocess.run(command, cwd=REPO, env=aws_environment(rehearsal.port),  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=timeout, check=False)
    if VERBOSE:
        print(result.stdout, end="", flush=True)
    step = Step(["preflight", rehearsal.env, *args], result.returncode, result.stdout)
    rehearsal.steps.append(step)
    return step


def set_service_quota(port: int, service_code: str, quota_code: str, name: str,
                      value: float) -> None:
    """Serve a Service Quotas value moto does not know (moto_adapter.apply_service_quotas)."""
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.rehearsal.moto_adapter import SET_QUOTA_ACTION

    body = json.dumps({"ServiceCode": service_code, "QuotaCode": quota_code,
                       "QuotaName": name, "Value": value})
    request = AWSRequest(method="POST", url=f"http://localhost:{port}/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"ServiceQuotasV20190624.{SET_QUOTA_ACTION}"})
    # Signed like any Service Quotas call, so moto routes it by the credential scope.
    SigV4Auth(Credentials("testing", "testing"), "servicequotas", REGION).add_auth(request)
    prepared = request.prepare()
    with urllib.request.urlopen(urllib.request.Request(  # noqa: S310 (the local emulator)
            prepared.url, data=body.encode(), headers=dict(prepared.headers),
            method="POST"), timeout=30) as response:
        assert response.status == 200, response.read()


def push_image_manifest(rehearsal: Rehearsal, repository: str, tag: str) -> None:
    """Put a (config-only) image manifest under tag, as `docker push` would leave one."""
    manifest = {"schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "size": 2, "digest": "sha256:" + "44136fa355b3678a1146ad16f7e8649e"
                                                            "94fb4fc21fe77e8310c060f61caaff8a"},
                "layers": []}
    rehearsal.client("ecr").put_image(repositoryName=repository, imageTag=tag,
                                      imageManifest=json.dumps(manifest))
