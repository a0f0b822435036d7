"""The generated report in real headless Chromium: the tiles show the fixture's numbers, every
chart drew its marks, nothing went to the console or the network, at desktop and phone width.

Screenshots go to the test's temporary folder, or to $REPORT_SCREENSHOTS when set (that is how
the ones in docs/ are made).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from callcause.cli import main as cli
from callcause.mapping.translator import Translator
from callcause.report.render import cause_texts
from tests.browser import chromium, console_errors, full_page_screenshot, requests_made

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "records.jsonl"

# Per chart: how many of its canvas pixels are not blank (a chart that drew nothing has none).
INKED = """
const c = document.getElementById(arguments[0]);
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
return n;"""
# Per chart: the cells of its table that hold a number above zero, the marks it should draw.
NONZERO_CELLS = """
const fig = document.getElementById(arguments[0]).closest('figure');
const table = fig.querySelector('table');
let n = 0;
table.querySelectorAll('tbody td.charted').forEach(td => { if (parseFloat(td.textContent) > 0) n++; });
return n;"""


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    rules = out.parent / "rules.yaml"
    rules.write_text("rules:\n  - name: peer-503\n    figure: sip_count\n    sip: 503\n    above: 0\n"
                     "    window: 1h\n    min_attempts: 1\n")
    assert cli(["report", str(FIXTURE), "-o", str(out), "--since", "2026-11-30", "--until", "2026-12-01",
                "--alerts", str(rules)]) == 0
    return out


def shots_dir(tmp_path: Path) -> Path:
    path = Path(os.environ.get("REPORT_SCREENSHOTS") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_report(driver, path: Path) -> None:
    driver.get(path.as_uri())
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-charts-ready"))


def tile(driver, source: str, figure: str) -> tuple[str, str]:
    cell = driver.find_element(By.CSS_SELECTOR, f'.tile[data-source="{source}"] [data-figure="{figure}"]')
    change = cell.find_elements(By.CLASS_NAME, "change")
    return cell.find_element(By.CLASS_NAME, "value").text, (change[0].text if change else "")


def test_desktop_numbers_marks_no_errors_no_requests(report_file, tmp_path):
    with chromium(1280, 900) as driver:
        open_report(driver, report_file)
        # pbx-eu-1 on 2026-11-30: 10 legs (9 on `peer`, 1 towards FreeSWITCH), 2 answered, one 503;
        # the day before: 9 legs, no 503
        assert tile(driver, "pbx-eu-1", "attempts") == ("10", "+11\u202f%")
        assert tile(driver, "pbx-eu-1", "asr") == ("20.0\u202f%", "\u22122.2\u202fpt")
        assert tile(driver, "pbx-eu-1", "ner") == ("88.9\u202f%", "\u221211.1\u202fpt")
        assert tile(driver, "all sources", "attempts")[0] == "21"
        first_cause = driver.find_element(By.CSS_SELECTOR, "#cause-table tbody tr").text
        summary = cause_texts(Translator.load(), 486, 17, "en")[0]
        assert first_cause.startswith(f"486 17 busy {summary}")

        marks = driver.execute_script("return window.reportMarks")
        charts = driver.find_elements(By.CSS_SELECTOR, "canvas[data-chart]")
        assert int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-charts-ready")) == len(charts) >= 6
        for canvas in charts:
            name, cid = canvas.get_attribute("data-chart"), canvas.get_attribute("id")
            assert marks[name] > 0, name
            assert driver.execute_script(INKED, cid) > 500, f"{name} drew nothing"
            if canvas.find_elements(By.XPATH, "ancestor::figure//table"):
                assert marks[name] == driver.execute_script(NONZERO_CELLS, cid), name
        # the back-tested rule and the event in the file are both on pbx-eu-1/peer's time axis
        alerts = driver.find_element(By.CSS_SELECTOR, 'figure[data-group="pbx-eu-1 / peer / outbound"] ul.alerts').text
        assert "peer-503 firing" in alerts and "carrier-outage firing" in alerts

        out = shots_dir(tmp_path) / "report-desktop.png"
        full_page_screenshot(driver, str(out), 1280)
        assert out.stat().st_size > 50_000

        # keyboard: the table behind a chart is in the tab order and opens with Enter
        summary = driver.find_element(By.CSS_SELECTOR, "details.numbers summary")
        assert driver.execute_script("return arguments[0].tabIndex", summary) >= 0
        summary.send_keys(Keys.ENTER)
        assert summary.find_element(By.XPATH, "..").get_attribute("open") is not None

        assert console_errors(driver) == []
        assert requests_made(driver) == [report_file.as_uri()]


def test_phone_width_fits_and_draws(report_file, tmp_path):
    with chromium(390, 844) as driver:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        open_report(driver, report_file)
        marks = driver.execute_script("return window.reportMarks")
        assert all(n > 0 for n in marks.values()), marks
        # nothing but the wide tables' own scroll boxes is wider than the phone
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
        assert console_errors(driver) == []
        assert requests_made(driver) == [report_file.as_uri()]
        out = shots_dir(tmp_path) / "report-phone.png"
        driver.save_screenshot(str(out))
        assert out.stat().st_size > 20_000


def test_a_request_in_the_page_would_be_caught(tmp_path):
    """The network check can fail: a page that loads an image from elsewhere is seen."""
    page = tmp_path / "leaky.html"
    page.write_text('<!doctype html><body data-charts-ready="0"><img src="http://cdn.example/x.png"></body>')
    with chromium() as driver:
        open_report(driver, page)
        assert "http://cdn.example/x.png" in requests_made(driver)


def test_printing_opens_every_table(report_file):
    """Printed, the numbers behind each chart are on paper too (the page opens its tables on
    `beforeprint`, which Chromium fires when it prints to PDF)."""
    import base64

    with chromium() as driver:
        open_report(driver, report_file)
        closed = "return [...document.querySelectorAll('details.numbers')].filter(d => !d.open).length"
        assert driver.execute_script(closed) > 0
        pdf = base64.b64decode(driver.execute_cdp_cmd("Page.printToPDF", {"printBackground": True})["data"])
        assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 3
        assert driver.execute_script(closed) == 0
        assert console_errors(driver) == []
