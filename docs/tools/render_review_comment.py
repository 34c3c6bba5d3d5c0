"""Draw a review (reports/review.md) as a pull-request comment, for docs/images/review-comment.png.

    .venv/bin/python docs/tools/render_review_comment.py reports/review.md docs/images/review-comment.png

The Markdown is rendered as GitHub renders a comment: CommonMark with GFM's tables and
strikethrough (markdown-it-py), raw HTML limited to what the review itself writes (<details>,
<summary>, <code>), in GitHub's light styles and a comment frame with the bot's name; headless Chromium
(Debian's package, as tests/test_report_in_browser.py drives it) takes a full-page screenshot,
which is reduced to a palette of some 30 colours so that the PNG stays small.

The review's words come from metric keys, params keys and fairness group labels, all written by
users, so nothing in it may become markup the review did not mean: text and code are escaped by
markdown-it, link targets pass its URL check (no javascript:), and raw HTML is shown as text except
the review's own tags, which start a line: inside a line (a table cell) a tag can only come from a
name, and shows as the name (GitHub would keep a harmless tag and strip the rest; the picture
never runs a script).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from markdown_it import MarkdownIt

from mlpipe.errors import EXIT_OK, EXIT_USAGE

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
WIDTH = 900  # the page's width in pixels: GitHub's comment column on a laptop
COLOURS = 28  # the palette: text in a few greys on GitHub's few backgrounds
# Colours kept exactly: white, the striped rows and code blocks, borders, text, links.
EXACT = [(255, 255, 255), (246, 248, 250), (209, 217, 224), (31, 35, 40), (89, 99, 110), (9, 105, 218)]
# Glyphs snapped to whole pixels: crisper text, and a PNG a quarter smaller than with fontconfig's
# default light hinting (a review of every metric is some 10,000 pixels tall).
FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <match target="font"><edit name="hintstyle" mode="assign"><const>hintfull</const></edit></match>
</fontconfig>
"""
# The tags mlpipe.tools.review writes (<code> in a fold's summary, where Markdown is not read);
# `open` is the one attribute GitHub keeps on <details>.
ALLOWED_TAG = re.compile(r"</?summary>|<details(?: open)?>|</details>|</?code>", re.IGNORECASE)
TAG = re.compile(r"<[^<>]*>")

# GitHub's light theme, the rules a review uses (github-markdown-css, abridged).
CSS = """
body { margin: 0; padding: 16px; background: #ffffff; color: #1f2328;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, "Liberation Sans", sans-serif; }
.timeline { display: flex; gap: 16px; align-items: flex-start; }
.avatar { flex: none; width: 40px; height: 40px; border-radius: 50%; background: #6e7781; color: #fff;
  font: bold 18px/40px sans-serif; text-align: center; }
.comment { flex: 1; min-width: 0; border: 1px solid #d1d9e0; border-radius: 6px; }
.comment-header { background: #f6f8fa; border-bottom: 1px solid #d1d9e0; border-radius: 6px 6px 0 0;
  padding: 8px 16px; font-size: 14px; color: #59636e; }
.comment-header strong { color: #1f2328; }
.label { border: 1px solid #d1d9e0; border-radius: 2em; padding: 0 7px; font-size: 12px; font-weight: 500; margin: 0 4px; }
.edited { float: right; }
.markdown-body { padding: 16px; font-size: 14px; line-height: 1.5; word-wrap: break-word; }
.markdown-body > :first-child { margin-top: 0 !important; }
.markdown-body h1, .markdown-body h2, .markdown-body h3 { margin: 24px 0 16px; font-weight: 600; line-height: 1.25; }
.markdown-body h1 { font-size: 2em; padding-bottom: .3em; border-bottom: 1px solid #d1d9e0b3; }
.markdown-body h2 { font-size: 1.5em; padding-bottom: .3em; border-bottom: 1px solid #d1d9e0b3; }
.markdown-body h3 { font-size: 1.25em; }
.markdown-body p, .markdown-body ul, .markdown-body table, .markdown-body pre, .markdown-body details { margin: 0 0 16px; }
.markdown-body ul { padding-left: 2em; }
.markdown-body code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 85%; padding: .2em .4em; background: #818b981f; border-radius: 6px; }
.markdown-body pre { padding: 16px; background: #f6f8fa; border-radius: 6px; overflow: auto; line-height: 1.45; font-size: 85%; }
.markdown-body pre code { padding: 0; background: transparent; font-size: 100%; white-space: pre; }
.markdown-body table { border-collapse: collapse; border-spacing: 0; display: block; width: max-content; max-width: 100%; overflow: auto; }
.markdown-body th, .markdown-body td { padding: 6px 13px; border: 1px solid #d1d9e0; }
.markdown-body th { font-weight: 600; }
.markdown-body tr { background: #ffffff; border-top: 1px solid #d1d9e0b3; }
.markdown-body tr:nth-child(2n) { background: #f6f8fa; }
.markdown-body summary { cursor: pointer; }
.markdown-body a { color: #0969da; text-decoration: underline; text-underline-offset: .2rem; }
"""


def raw_html(content: str) -> str:
    """A block of raw HTML from the Markdown: the review's own tags kept, every other tag shown as
    text. Text between tags stays HTML (an entity such as &amp; is GitHub's too), but a lone `<` in
    it is escaped so that it cannot open a tag the check did not see."""
    out, end = [], 0
    for match in TAG.finditer(content):
        tag = match.group()
        out += [content[end : match.start()].replace("<", "&lt;"), tag if ALLOWED_TAG.fullmatch(tag) else html.escape(tag, quote=False)]
        end = match.end()
    out.append(content[end:].replace("<", "&lt;"))
    return "".join(out)


def markdown_html(text: str) -> str:
    """The comment's body as GitHub renders it (see the module's docstring for the differences)."""
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

    def block(_renderer, tokens, index, _options, _env) -> str:
        return raw_html(tokens[index].content)

    def inline(_renderer, tokens, index, _options, _env) -> str:
        return html.escape(tokens[index].content, quote=False)

    md.add_render_rule("html_block", block)
    md.add_render_rule("html_inline", inline)
    return md.render(text)


def comment_page(text: str, author: str) -> str:
    """A whole page: the rendered Markdown in a comment frame under `author`'s name."""
    name = html.escape(author)
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>review comment</title>'
        f"<style>{CSS}</style></head><body>"
        f'<div class="timeline"><div class="avatar">{html.escape(author[:1].upper())}</div><div class="comment">'
        f'<div class="comment-header"><strong>{name}</strong><span class="label">bot</span>commented'
        '<span class="edited">edited</span></div>'
        f'<div class="markdown-body">{markdown_html(text)}</div></div></div></body></html>\n'
    )


def screenshot(page_html: str, png: Path, chromium: str, width: int = WIDTH) -> None:
    """Full-page screenshot of `page_html` in headless Chromium, saved as a palette PNG."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        page_file, fonts_conf = Path(folder) / "comment.html", Path(folder) / "fonts.conf"
        page_file.write_text(page_html, encoding="utf-8")
        fonts_conf.write_text(FONTS_CONF, encoding="utf-8")
        environment = {**os.environ, "FONTCONFIG_FILE": str(fonts_conf)}
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, env=environment)
        page = browser.new_page(viewport={"width": width, "height": 600}, device_scale_factor=1)
        page.goto(page_file.as_uri())
        raw_png = Path(folder) / "comment.png"
        page.screenshot(path=str(raw_png), full_page=True)
        browser.close()
        with Image.open(raw_png) as image:
            palette_image(image.convert("RGB")).save(png, optimize=True)


def palette_image(image):
    """`image` in COLOURS colours (median cut) plus GitHub's own, each pixel the nearest of them: text
    on white needs few, and a palette PNG is a third of the RGB one. The nearest is computed here
    because Pillow's mapping onto a given palette is approximate (white came out as 251, 251, 251)."""
    import numpy as np
    from PIL import Image

    chosen = np.array(image.quantize(colors=COLOURS, dither=Image.Dither.NONE).getpalette()[: 3 * COLOURS]).reshape(-1, 3)
    palette = np.unique(np.vstack([chosen, EXACT]), axis=0).astype(np.int32)
    pixels = np.asarray(image, dtype=np.int32)
    keys, inverse = np.unique((pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2], return_inverse=True)
    colours = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1)
    nearest = ((colours[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    indexed = Image.fromarray(nearest[inverse].reshape(pixels.shape[:2]).astype(np.uint8), mode="P")
    indexed.putpalette(palette.astype(np.uint8).flatten().tolist())
    return indexed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render a review's Markdown as a pull-request comment and screenshot it.")
    parser.add_argument("review", type=Path, help="the review's Markdown (reports/review.md)")
    parser.add_argument("png", type=Path, help="the picture to write (docs/images/review-comment.png)")
    parser.add_argument("--author", default="github-actions", help="the name over the comment: the workflow posts as github-actions[bot]")
    parser.add_argument("--html", type=Path, help="also write the page itself here")
    parser.add_argument("--width", type=int, default=WIDTH, help="the page's width in pixels")
    args = parser.parse_args(argv)
    try:
        text = args.review.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: render_review_comment: cannot read {args.review} ({exc.strerror}): run `make review` first", file=sys.stderr)
        return EXIT_USAGE
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: render_review_comment: Chromium is not installed: apt-get install chromium", file=sys.stderr)
        return EXIT_USAGE
    page_html = comment_page(text, args.author)
    if args.html is not None:
        args.html.write_text(page_html, encoding="utf-8")
    screenshot(page_html, args.png, chromium, args.width)
    print(f"wrote {args.png} ({args.png.stat().st_size:,} bytes)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
