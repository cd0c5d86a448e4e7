"""What the test suite needs beyond Python packages, made present before pytest runs.

Part of the README's test command: ``python -m tests.prerequisites`` installs, when missing,
Debian's Chromium (the billing portal's browser tests drive it through Playwright, which never
downloads a browser of its own here) and a compose tool (tests/test_compose.py validates
docker-compose.yml offline: the ``docker compose`` plugin, else Debian's ``docker-compose``), and
says clearly what it cannot do. PostgreSQL is checked by the suite itself: a missing server is a
failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        apt_install("chromium", "the billing portal's browser tests")


def ensure_compose() -> None:
    plugin = shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0
    if not plugin and shutil.which("docker-compose") is None:
        apt_install("docker-compose", "validating docker-compose.yml (no Docker engine needed)")


def apt_install(package: str, why: str) -> None:
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        sys.exit(f"{package} is missing, needed for {why}: install Debian's {package} package and run again")
    print(f"installing Debian's {package} for {why} (once)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run([apt, "install", "-y", "-q", package], env=env, capture_output=True).returncode != 0:
        subprocess.run([apt, "update", "-q"], check=True, env=env)
        subprocess.run([apt, "install", "-y", "-q", package], check=True, env=env)


if __name__ == "__main__":
    ensure_chromium()
    ensure_compose()
