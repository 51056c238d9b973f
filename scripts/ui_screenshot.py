"""Screenshot of the explainer page of a running service (the picture in README.md and docs/ui.png).

    .venv/bin/python scripts/ui_screenshot.py http://127.0.0.1:8000 docs/ui.png [--item 50] [--token T]

Opens URL/ui in Debian's headless chromium (Selenium + chromedriver, as the browser test), ranks the page's default
candidates for its default user (the demo's "1"), opens the explanation of ``--item`` (default: the top-ranked
candidate) and saves the page as a PNG.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--item", type=int, help="the candidate to explain (default: the top-ranked one)")
    parser.add_argument("--token", help="LONGRANK_DATA_TOKEN, when the service has one")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=0, help="window height (default: the whole page)")
    args = parser.parse_args()
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        print("ui_screenshot: needs chromium and chromedriver (apt-get install -y chromium chromium-driver)",
              file=sys.stderr)
        return 2
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory() as profile:
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={args.width},1200"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        try:
            wait = WebDriverWait(driver, 60)
            driver.get(args.url.rstrip("/") + "/ui/")
            if args.token:
                driver.execute_script("document.getElementById('token').value = arguments[0]", args.token)
            driver.find_element(By.ID, "rank").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ranked tbody tr"))
            selector = "#ranked tbody tr" if args.item is None else f'#ranked tbody tr[data-item-id="{args.item}"]'
            driver.find_element(By.CSS_SELECTOR, selector).click()
            wait.until(ec.visibility_of_element_located((By.ID, "explanation")))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline svg"))
            height = args.height or driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(args.width, height)
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
    print(f"ui_screenshot: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
