#!/usr/bin/env bash
# The browser the UI test drives (tests/integration/test_ui_browser.py): Debian's chromium + chromium-driver, used
# through Selenium (browser builds cannot be downloaded here, so not Playwright's own).
#  - both present -> nothing to do, nothing printed;
#  - missing, and we are root with apt-get -> install them (one line printed, apt's chatter kept out);
#  - otherwise -> one line saying the browser test will be skipped. Never fails: `make test` goes on either way.
set -uo pipefail

have_browser() {
    command -v chromedriver >/dev/null 2>&1 &&
        { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
}

have_browser && exit 0
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-browser: chromium/chromedriver missing; installing Debian's chromium and chromium-driver" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } >/dev/null ||
        echo "ensure-browser: apt-get could not install them" >&2
fi
have_browser || echo "ensure-browser: no chromium + chromedriver (install: apt-get install -y chromium chromium-driver);" \
    "the browser test will be skipped" >&2
exit 0
