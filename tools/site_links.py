"""Check every link of the built documentation site: each relative ``href`` or ``src`` must
name a file of the site, and each ``#fragment`` an ``id`` in that file.

``python tools/site_links.py docs/_build/html`` prints one line per broken link and exits 1
if there is one (0 otherwise). Links to other sites (``http:``, ``https:``, ``mailto:``) are
not followed: the build is offline. The theme's templates under ``_static/`` are not pages. Sphinx checks the references it resolves itself
(``-n``); this catches what it passes through unchecked: a Markdown link to a heading that
does not exist, or to a file that is not part of the site.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["broken_links", "main"]


class _Page(HTMLParser):
    """The ids and the links (href/src) of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link")) or (name == "src" and tag == "img"):
                self.links.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def broken_links(site: Path) -> list[str]:
    """``page: link`` for every relative link of the HTML pages under ``site`` whose file or
    fragment does not exist, sorted; [] when every link resolves."""
    files = [p for p in sorted(site.rglob("*.html")) if "_static" not in p.relative_to(site).parts]
    pages = {path.resolve(): _parse(path) for path in files}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("//"):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(site.resolve())}: {link}"
            if not target.exists():
                broken.append(where)
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(where)
    return sorted(broken)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python tools/site_links.py SITE_DIR (the built HTML)", file=sys.stderr)
        return 2
    broken = broken_links(Path(args[0]))
    for line in broken:
        print(f"broken link: {line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
