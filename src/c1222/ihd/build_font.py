"""Rebuild the display page's Korean web font (``static/vendor/ihd-hangul-*.woff2``).

The page must show Korean on a machine without CJK fonts and must load nothing from the
internet, so it ships a subset of NanumGothic (SIL OFL 1.1, NAVER Corporation) with it: the
2,350 Hangul syllables of KS X 1001 (every common word), the Hangul compatibility jamo, every
other Hangul character the page's own strings use, ASCII and ₩. The OFL reserves the name
"Nanum" for the original, so the subset is renamed "IHD Hangul"; the licence text is
``static/vendor/OFL-IHD-Hangul.txt``.

Run once after changing the page's strings (a test fails when they use a syllable the font
lacks)::

    apt-get install fonts-nanum && pip install fonttools brotli
    python -m c1222.ihd.build_font [--src /usr/share/fonts/truetype/nanum]

The committed WOFF2 files are what ships; nothing here runs when the display does.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "static" / "vendor"
FAMILY = "IHD Hangul"
#: (source file, weight name, output file)
WEIGHTS = (("NanumGothic.ttf", "Regular", "ihd-hangul-400.woff2"),
           ("NanumGothicBold.ttf", "Bold", "ihd-hangul-700.woff2"))
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")


def ks_x_1001_hangul() -> set[str]:
    """The 2,350 precomposed syllables of KS X 1001 (EUC-KR rows 0xB0-0xC8)."""
    out = set()
    for lead in range(0xB0, 0xC9):
        for trail in range(0xA1, 0xFF):
            try:
                out.add(bytes([lead, trail]).decode("euc_kr"))
            except UnicodeDecodeError:
                continue
    return out


def page_hangul() -> set[str]:
    """Every Hangul character in the page's files (labels, i18n, markup)."""
    static = VENDOR.parent
    text = "".join((static / name).read_text("utf-8")
                   for name in ("index.html", "i18n.js", "app.js"))
    return set(HANGUL.findall(text))


def characters() -> str:
    chars = ks_x_1001_hangul() | page_hangul()
    chars |= {chr(c) for c in range(0x3131, 0x318F)}  # compatibility jamo (ㄱ, ㅏ...)
    chars |= {chr(c) for c in range(0x20, 0x7F)} | set("₩·—…–")
    return "".join(sorted(chars))


def build(src: Path, out: Path = VENDOR) -> list[Path]:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    written = []
    for source, weight, target in WEIGHTS:
        font = TTFont(src / source)
        options = subset.Options()
        options.flavor = "woff2"
        options.hinting = False  # screens the page runs on render unhinted outlines well
        options.desubroutinize = True
        options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14, 16, 17]
        options.layout_features = ["*"]
        sub = subset.Subsetter(options)
        sub.populate(text=characters())
        sub.subset(font)
        _rename(font, weight)
        path = out / target
        font.flavor = "woff2"
        font.save(path)
        written.append(path)
    return written


def _rename(font: object, weight: str) -> None:
    """OFL: a modified version may not carry a Reserved Font Name (Nanum...)."""
    names = font["name"]  # type: ignore[index]
    postscript = FAMILY.replace(" ", "") + "-" + weight
    new = {1: FAMILY, 2: weight, 3: f"{postscript};subset of NanumGothic for c1222",
           4: f"{FAMILY} {weight}", 6: postscript, 16: FAMILY, 17: weight}
    for record in list(names.names):
        if record.nameID in new:
            record.string = new[record.nameID]
        elif record.nameID == 0:
            record.string = (f"{record.toUnicode()} Modified (subset, renamed) from "
                             "NanumGothic for the c1222 in-home display.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path("/usr/share/fonts/truetype/nanum"),
                        help="folder with NanumGothic.ttf and NanumGothicBold.ttf")
    args = parser.parse_args()
    for path in build(args.src):
        print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
