"""What the test suite needs beyond Python packages, made present before pytest runs.

Part of the README's test command: ``python -m tests.prerequisites`` installs Debian's Chromium
(the billing portal's browser tests drive it through Playwright, which never downloads a browser
of its own here) when it is missing, and says clearly what it cannot do. PostgreSQL is checked by
the suite itself: a missing server is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        sys.exit(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) and run again")
    print("installing Debian's chromium for the browser tests (once)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt, "update", "-q"], check=True, env=env)
    subprocess.run([apt, "install", "-y", "-q", "chromium"], check=True, env=env)


if __name__ == "__main__":
    ensure_chromium()
