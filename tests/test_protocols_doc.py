"""docs/protocols.md is the wire reference the code cites: every "docs/protocols.md §N" in the
package and the tests names a section that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocols.md"


def sections() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", DOC.read_text(), re.M)}


def test_every_cited_section_exists() -> None:
    known = sections()
    assert {"2.6", "3.4", "5.1", "8.3"} <= known
    cited: set[tuple[str, str]] = set()
    for path in [*(ROOT / "mirror_providers").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        for m in re.finditer(r"protocols\.md((?:,? ?§\d+(?:\.\d+)?)+)", path.read_text()):
            cited |= {(path.name, s) for s in re.findall(r"§(\d+(?:\.\d+)?)", m.group(1))}
    assert len(cited) >= 10
    missing = sorted((f, s) for f, s in cited if s not in known)
    assert missing == [], missing


def test_the_code_cites_our_copy_not_the_shared_one() -> None:
    for path in (ROOT / "mirror_providers").rglob("*.py"):
        text = path.read_text()
        assert "../shared/docs/protocols.md" not in text, path
        assert not re.search(r"(?<!docs/)protocols\.md §", text), path
