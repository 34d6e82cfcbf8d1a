"""The command-line tools the benchmark drives, installed from Debian's packages when missing."""

from __future__ import annotations

import os
import shutil
import subprocess


class ToolMissing(RuntimeError):
    """A tool that is not installed and cannot be installed here."""


def ensure(command: str, package: str) -> str:
    """The path of ``command``; installs Debian's ``package`` with apt-get when run as root."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ToolMissing(
            f"{command} is needed and is not installed; install it first "
            f"(Debian/Ubuntu: sudo apt-get install {package})"
        )
    print(f"installing {package} (for {command}) with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(step, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ToolMissing(f"{' '.join(step)} failed: {done.stderr.strip()[-500:]}")
    found = shutil.which(command)
    if not found:
        raise ToolMissing(f"apt-get installed {package} but {command} is still not on PATH")
    return found
