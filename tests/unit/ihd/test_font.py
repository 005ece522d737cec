"""The Korean web font the page ships (so Korean renders on a device without CJK fonts): it
covers every Hangul character of the page's strings, is small, is renamed as the OFL requires
for a modified NanumGothic, and the stylesheet uses it."""

from __future__ import annotations

import pytest

from c1222.ihd import build_font
from c1222.ihd.web import STATIC
from tests.interop.tshark import _missing

FILES = [STATIC / "vendor" / target for _src, _weight, target in build_font.WEIGHTS]


@pytest.fixture(scope="module")
def fonts():
    try:
        from fontTools.ttLib import TTFont
        import brotli  # noqa: F401 - fontTools needs it to read WOFF2
    except ImportError:
        _missing("fonttools and brotli are not installed (pip install -e .[test])")
    return [TTFont(path) for path in FILES]


def test_every_hangul_character_of_the_page_is_in_both_weights(fonts) -> None:
    used = build_font.page_hangul()
    assert len(used) > 100  # the Korean labels are there to check
    for path, font in zip(FILES, fonts):
        cmap = font.getBestCmap()
        missing = sorted(c for c in used if ord(c) not in cmap)
        assert not missing, f"{path.name} lacks {''.join(missing)}: run c1222.ihd.build_font"
        # the whole KS X 1001 Hangul set, digits and the won sign
        assert all(ord(c) in cmap for c in build_font.ks_x_1001_hangul())
        assert all(ord(c) in cmap for c in "0123456789₩")


def test_small_renamed_and_licensed(fonts) -> None:
    assert sum(path.stat().st_size for path in FILES) < 1_000_000
    for font in fonts:
        names = {r.nameID: r.toUnicode() for r in font["name"].names}
        assert names[1] == build_font.FAMILY
        for nid in (1, 3, 4, 6, 16):  # OFL: no Reserved Font Name on a modified version
            assert "nanum" not in names.get(nid, "").lower().split(";")[0], (nid, names[nid])
    licence = (STATIC / "vendor" / "OFL-IHD-Hangul.txt").read_text("utf-8")
    assert "SIL Open Font License, Version 1.1" in licence and "NAVER" in licence


def test_the_stylesheet_uses_it_for_hangul_first() -> None:
    css = (STATIC / "style.css").read_text("utf-8")
    for path in FILES:
        assert f'url("vendor/{path.name}")' in css
    body = css[css.index("body {"):]
    assert body.index('"IHD Hangul"') < body.index("system-ui")
    assert "unicode-range: U+1100-11FF, U+3130-318F, U+AC00-D7A3" in css
