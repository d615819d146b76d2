#!/usr/bin/env python3
"""Check a medforge eval report.html (verifier only; standard library only).

1. The page is self-contained: no external scripts, styles or images; every chart is an inline
   base64 PNG that decodes, with chart-coloured pixels in it.
2. With a headless Chromium (chromium / chromium-browser / google-chrome on PATH, or $CHROMIUM),
   the page is rendered to a screenshot and the charts' bar colours must be visible in it.

usage: check_report_html.py REPORT.html [--screenshot OUT.png] [--require-browser]
"""
import base64
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

# Every colour charts.rs fills bars with (the base model of a comparison is grey).
BAR_COLOURS = [(67, 147, 195), (33, 102, 172), (214, 96, 77), (178, 24, 43), (150, 150, 150), (27, 120, 55)]


def png_pixels(data):
    """Decode an 8-bit RGB/RGBA PNG into (width, height, rows of (r, g, b))."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), f"unsupported PNG (depth {depth}, colour type {ctype})"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return w, h, rows


def coloured(rows, step=2):
    n = 0
    for row in rows[::step]:
        for px in row[::step]:
            if any(sum(abs(px[k] - c[k]) for k in range(3)) < 40 for c in BAR_COLOURS):
                n += 1
    return n


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    path = os.path.abspath(args[0])
    html = open(path, encoding="utf-8").read()
    bad = re.findall(r'<(?:script|img|link|iframe)[^>]+(?:src|href)="(?!data:)[^"]*"', html)
    assert not bad, f"external resources: {bad[:3]}"
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert imgs, "no inline charts"
    for k, b64 in enumerate(imgs):
        w, h, rows = png_pixels(base64.b64decode(b64))
        n = coloured(rows)
        assert n > 50, f"chart {k} ({w}x{h}) has no visible bars ({n} coloured pixels)"
        print(f"chart {k}: {w}x{h}, {n} bar-coloured pixels (sampled)")
    browser = os.environ.get("CHROMIUM") or next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if not browser:
        # CI promises the rendering check ran: there a missing browser is a failure, not a note.
        if "--require-browser" in args or os.environ.get("CI") in ("true", "1"):
            print("no headless Chromium found (CI and --require-browser need one: apt-get install chromium)", file=sys.stderr)
            return 1
        print("note: no Chromium on PATH; static checks only")
        return 0
    out = args[args.index("--screenshot") + 1] if "--screenshot" in args else os.path.join(tempfile.mkdtemp(), "shot.png")
    # The flags that keep Chromium off the network (this machine's network is closed; it would retry at every start).
    profile = tempfile.mkdtemp()
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={out}", "--window-size=1200,2400", "file://" + path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    w, h, rows = png_pixels(open(out, "rb").read())
    n = coloured(rows)
    assert n > 500, f"screenshot {out}: charts not visible ({n} bar-coloured pixels)"
    print(f"screenshot {out}: {w}x{h}, {n} bar-coloured pixels (sampled): charts visible")
    return 0


if __name__ == "__main__":
    sys.exit(main())
