"""A STAND-IN for the gateway's base image, built on this machine: not the official image.

`FROM python:3.11.14-slim-bookworm` (app/Dockerfile) cannot be pulled here (no registry). The
stand-in is Debian bookworm (`debootstrap --variant=minbase` from the Debian mirror the machine's
apt uses) plus Debian's python3.11 (3.11.2, not 3.11.14) with venv/ensurepip and a `python` on
PATH (python-is-python3), imported with `docker import` and tagged with the Dockerfile's exact
FROM name on the private engine only (tests/images/engine.py). app/Dockerfile does not change.

What makes it a stand-in beyond the Python build: pip inside a build cannot verify TLS on this
machine, which intercepts TLS with its own CA. So the stand-in carries the machine's CA bundle
(/etc/ssl/certs/ca-certificates.crt) and an /etc/pip.conf that points pip at it; a build reaches
PyPI through `--network host` (engine.build_image). The official image keeps Debian's CAs and
pip's defaults; nothing here weakens verification.

Every image built on it inherits its labels (STANDIN_LABEL says what it stands in for), so a
result can name the stand-in from the image itself.

Cached by content: the key is a hash of the recipe (suite, variant, mirror, packages, image
config, pip config, the CA bundle's bytes). The root filesystem tarball lives under
~/.cache/llm-api-on-ecs/standin/ ($XDG_CACHE_HOME respected), so a fresh clone on the same
machine reuses it; the imported image is looked up by the key's label on the engine first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.images import dockerd

APP_DOCKERFILE = dockerd.REPO / "app" / "Dockerfile"
SUITE = "bookworm"
VARIANT = "minbase"
# python3-distutils provides python3.11-distutils, a dependency of python3.11-venv that
# debootstrap's resolver does not follow (it is a virtual package).
PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "python-is-python3",
            "ca-certificates")
IMAGE_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
STANDIN_REPOSITORY = "llm-api-standin/python"
STANDIN_LABEL = "llm-api.standin"  # value: what it stands in for and how it was made
STANDIN_KEY_LABEL = "llm-api.standin.key"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def from_name(dockerfile: Path = APP_DOCKERFILE) -> str:
    """The one base image every stage of the Dockerfile starts from (its FROM lines)."""
    bases = {m.group(1) for m in re.finditer(r"^FROM\s+(?:--\S+\s+)*(\S+)", dockerfile.read_text(),
                                             re.MULTILINE | re.IGNORECASE)}
    if len(bases) != 1:
        raise ValueError(f"{dockerfile}: expected one base image in its FROM lines, found "
                         f"{sorted(bases) or 'none'}; the stand-in stands in for one")
    return bases.pop()


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The mirror apt uses for SUITE (deb822 .sources or one-line .list), else deb.debian.org."""
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            raw = dict(line.split(":", 1) for line in stanza.splitlines()
                       if ":" in line and not line.startswith(("#", " ")))
            fields = {key.strip(): value.split() for key, value in raw.items()}
            if SUITE in fields.get("Suites", []) and "deb" in fields.get("Types", []):
                return fields["URIs"][0].rstrip("/")
    for path in [sources / "sources.list", *sorted(sources.glob("sources.list.d/*.list"))]:
        lines = path.read_text().splitlines() if path.is_file() else []
        for line in lines:
            words = re.sub(r"\[[^]]*\]", "", line).split()  # without [arch=...] options
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1].rstrip("/")
    return DEFAULT_MIRROR


def recipe() -> dict[str, object]:
    return {"suite": SUITE, "variant": VARIANT, "mirror": debian_mirror(),
            "packages": list(PACKAGES), "image_config": list(IMAGE_CONFIG), "pip_conf": PIP_CONF,
            "ca_bundle_sha256": hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest(),
            "stands_in_for": from_name()}


def cache_key() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    override = os.environ.get("LLM_API_STANDIN_CACHE")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llm-api-on-ecs" / "standin"


def description() -> str:
    return (f"STAND-IN for {from_name()}: Debian {SUITE} {VARIANT} (debootstrap) + Debian "
            f"python3.11, this machine's CA bundle for pip; built by tests/images/standin.py")


def _run(command: list[str], what: str, timeout: float) -> None:
    """Run command in its own process group; whatever interrupts it (a timeout, a test's
    timeout, Ctrl-C) kills the whole group, so no dpkg is left writing into the root."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except BaseException as error:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if isinstance(error, subprocess.TimeoutExpired):
            raise dockerd.EngineCommandError(f"{what}: no result within {timeout:.0f} s") from error
        raise
    if process.returncode != 0:
        raise dockerd.EngineCommandError(
            f"{what} failed ({' '.join(command[:3])} ... exited {process.returncode}):\n"
            f"{dockerd._tail(output)}")


def _mounts_under(path: Path) -> list[str]:
    points = [line.split()[1].replace("\\040", " ")
              for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


def _remove_scratch(path: Path) -> None:
    """Unmount what debootstrap left mounted in the root (proc, sys when it was killed), then
    delete it; refuse to delete while anything is still mounted there."""
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    left = _mounts_under(path)
    if left:
        raise dockerd.EngineCommandError(f"{path}: still mounted {left}; not deleted. Unmount "
                                         "them (umount --lazy) and delete it by hand")
    shutil.rmtree(path)


def build_rootfs_tarball(destination: Path) -> None:
    """debootstrap the root filesystem, add the stand-in's files, tar it to destination."""
    if shutil.which("debootstrap") is None:
        raise dockerd.EngineCommandError(
            "no debootstrap: apt-get install -y --no-install-recommends debootstrap (.ci/run does)")
    scratch = Path(tempfile.mkdtemp(dir=destination.parent, prefix="rootfs-"))
    try:
        root = scratch / "root"
        keyring = ["--keyring", str(DEBIAN_KEYRING)] if DEBIAN_KEYRING.exists() else []
        _run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
              *keyring, SUITE, str(root), debian_mirror()], "debootstrap of the stand-in base",
             timeout=900)
        _run(["chroot", str(root), "python", "-c", "import ensurepip, ssl, venv"],
             "the stand-in's python (venv, ensurepip, ssl)", timeout=60)
        shutil.copyfile(HOST_CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
        (root / "etc/pip.conf").write_text(PIP_CONF)
        (root / "etc/llm-api-standin").write_text(description() + "\n")
        for leftover in ("var/lib/apt/lists", "var/cache/apt", "debootstrap"):
            shutil.rmtree(root / leftover, ignore_errors=True)
        partial = destination.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*",
              "--exclude=./sys/*", "-C", str(root), "-cf", str(partial), "."],
             "tar of the stand-in root filesystem", timeout=300)
        partial.rename(destination)
    finally:
        _remove_scratch(scratch)


def python_base() -> str:
    """Build (once) and tag the stand-in; return app/Dockerfile's FROM name, now that tag."""
    name, key = from_name(), cache_key()
    image = f"{STANDIN_REPOSITORY}:{key}"
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per machine; the others wait and reuse
        present = dockerd.docker("image", "inspect", "--format",
                                f'{{{{index .Config.Labels "{STANDIN_KEY_LABEL}"}}}}', image,
                                check=False)
        if present.returncode != 0 or present.stdout.strip() != key:
            tarball = directory / f"{key}.tar"
            if not tarball.exists():
                build_rootfs_tarball(tarball)
            changes = [*IMAGE_CONFIG, f'LABEL {STANDIN_LABEL}="{description()}"',
                       f"LABEL {STANDIN_KEY_LABEL}={key}"]
            dockerd.docker("import", *[a for c in changes for a in ("--change", c)],
                          "--message", description(), str(tarball), image, timeout=600)
        dockerd.docker("tag", image, name)
    return name
