#!/usr/bin/env bash
# The browser the dashboard tests drive: Debian's chromium (headless, through Playwright's Python
# package, which setup.sh installs with the test extras). Playwright's own browser downloads are never
# used: the tests launch /usr/bin/chromium. Only `make test` needs it; `make run` does not.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium (for the dashboard tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
elif command -v sudo >/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "setup: please install chromium (the dashboard tests drive it); they are skipped without it" >&2
fi
