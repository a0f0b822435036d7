"""Which chart library for `callcause report`: bytes added to the HTML file and time to draw.

Each candidate draws the report's heaviest chart (categories over time: 8 stacked series x
168 hourly buckets) in headless Chromium from a page that embeds the library inline, as the
report does. The time is from navigation start to the chart's first frame, median of several
fresh page loads, so it includes parsing the library. The baseline is the same page with the
chart drawn as plain inline SVG by a few lines of our own JavaScript.

The libraries are not dependencies of callcause; fetch the npm packages first:

    mkdir libs && cd libs && for p in chart.js uplot echarts frappe-charts vega vega-lite vega-embed; \
        do f=$(npm pack --silent $p) && mkdir -p $p && tar xzf $f -C $p; done && cd ..
    python bench/chart_libs.py --libs libs
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SERIES = ["answered", "busy", "no_answer", "cancelled", "rejected", "congestion", "network", "unavailable"]
BUCKETS = 168

# library -> (files under --libs, JavaScript drawing `DATA` into #c and calling done())
CANDIDATES: dict[str, tuple[list[str], str]] = {
    "inline SVG (baseline)": ([], """
        const W=900,H=300,svg=document.createElementNS('http://www.w3.org/2000/svg','svg');
        svg.setAttribute('width',W);svg.setAttribute('height',H);
        const tot=DATA.labels.map((_,i)=>DATA.series.reduce((a,s)=>a+s.values[i],0));
        const mx=Math.max(...tot),bw=W/DATA.labels.length;let out='';
        DATA.labels.forEach((_,i)=>{let y=H;DATA.series.forEach((s,k)=>{const h=s.values[i]/mx*H;y-=h;
          out+=`<rect x="${i*bw}" y="${y}" width="${bw-1}" height="${h}" fill="hsl(${k*45},60%,50%)"/>`;});});
        svg.innerHTML=out;document.getElementById('c').appendChild(svg);done();"""),
    "Chart.js 4": (["chart.js/package/dist/chart.umd.min.js"], """
        const cv=document.createElement('canvas');document.getElementById('c').appendChild(cv);
        new Chart(cv,{type:'bar',options:{animation:false,responsive:false,
          scales:{x:{stacked:true},y:{stacked:true}}},
          data:{labels:DATA.labels,datasets:DATA.series.map(s=>({label:s.name,data:s.values}))}});done();"""),
    "uPlot 1.6": (["uplot/package/dist/uPlot.iife.min.js"], """
        const xs=DATA.labels.map((_,i)=>i);let acc=xs.map(()=>0);
        const ys=DATA.series.map(s=>{acc=acc.map((a,i)=>a+s.values[i]);return acc.slice();}).reverse();
        new uPlot({width:900,height:300,series:[{}].concat(DATA.series.map(s=>({label:s.name,
          fill:'#8888',paths:uPlot.paths.bars()}))),},[xs].concat(ys),document.getElementById('c'));done();"""),
    "ECharts 6 (simple build)": (["echarts/package/dist/echarts.simple.min.js"], """
        const el=document.getElementById('c');el.style.width='900px';el.style.height='300px';
        const ch=echarts.init(el,null,{renderer:'svg'});
        ch.on('finished',()=>done());
        ch.setOption({animation:false,xAxis:{type:'category',data:DATA.labels},yAxis:{},tooltip:{},
          series:DATA.series.map(s=>({name:s.name,type:'bar',stack:'all',data:s.values}))});"""),
    "Frappe Charts 1.6": (["frappe-charts/package/dist/frappe-charts.min.umd.js"], """
        new frappe.Chart('#c',{type:'bar',height:300,animate:0,barOptions:{stacked:1},
          data:{labels:DATA.labels,datasets:DATA.series.map(s=>({name:s.name,values:s.values}))}});
        requestAnimationFrame(()=>done());"""),
    "Vega-Lite 6 (vega + vega-lite + vega-embed)": ([
        "vega/package/build/vega.min.js", "vega-lite/package/build/vega-lite.min.js",
        "vega-embed/package/build/vega-embed.min.js"], """
        const rows=[];DATA.series.forEach(s=>s.values.forEach((v,i)=>rows.push({t:DATA.labels[i],c:s.name,n:v})));
        vegaEmbed('#c',{width:900,height:300,data:{values:rows},mark:'bar',
          encoding:{x:{field:'t',type:'ordinal'},y:{field:'n',type:'quantitative',aggregate:'sum'},
          color:{field:'c'}}},{renderer:'svg',actions:false}).then(()=>done());"""),
}


def page(lib_js: str, draw: str) -> str:
    data = {"labels": [f"h{i}" for i in range(BUCKETS)],
            "series": [{"name": n, "values": [(i * 7 + k * 13) % 50 for i in range(BUCKETS)]}
                       for k, n in enumerate(SERIES)]}
    return ("<!doctype html><html><head><meta charset=utf-8></head><body><div id=c></div>"
            f"<script>{lib_js}</script><script>const DATA={json.dumps(data)};"
            "function done(){requestAnimationFrame(()=>{window.DRAWN=performance.now();});}"
            f"{draw}</script></body></html>")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--libs", required=True, help="folder with the unpacked npm packages")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, (files, draw) in CANDIDATES.items():
                js = "\n".join((Path(args.libs) / f).read_text() for f in files)
                path = Path(tmp) / "page.html"
                path.write_text(page(js, draw))
                times = []
                for _ in range(args.runs):
                    driver.get(path.as_uri())
                    for _ in range(200):
                        t = driver.execute_script("return window.DRAWN")
                        if t:
                            break
                        driver.implicitly_wait(0)
                    times.append(float(t))
                raw = len(js.encode())
                rows.append((name, raw, len(gzip.compress(js.encode())), statistics.median(times)))
    finally:
        driver.quit()
    base = rows[0][3]
    print(f"{'library':45} {'added KB':>9} {'gzip KB':>8} {'draw ms':>8} {'x baseline':>10}")
    for name, raw, gz, ms in rows:
        print(f"{name:45} {raw / 1024:9.0f} {gz / 1024:8.0f} {ms:8.0f} {ms / base:10.1f}")


if __name__ == "__main__":
    main()
