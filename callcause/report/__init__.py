"""The HTML report: `callcause report FILES` and the daemon's `/report` page.

Record files (or the daemon's recent legs) in, one self-contained HTML page out; the templates,
the chart library and the page's texts ship beside the code as package data.
"""
