"""A tiny corpus for the synth tests (written for them, CC0): a .txt, a .md, an .html and a .pdf document, with
numbers, years, dates, names, units, passives and negatable verbs for every case kind to find."""

from __future__ import annotations

from pathlib import Path

BRIDGE = """Kestrel Harbour Bridge

The Kestrel Harbour Bridge is 1,149 metres long and opened on 19 March 1932. It was designed by the engineer John Bradfield, who supervised the work for eight years. The bridge carries 8 lanes of traffic and two railway tracks across the harbour. In 1998, the bridge was repainted by a crew of 120 workers.

The main arch is made of silicon steel rather than concrete. Construction cost 4,200,000 pounds, a debt that was paid off in 1988. The bridge, a steel through arch, is the widest long-span bridge in the country. About 160,000 vehicles cross the bridge every day.

The pylons are 89 metres tall and are faced with granite from Moruya. Tolls were introduced in 1932 and are collected only from southbound traffic. The bridge was opened by Premier Jack Lang in front of 300,000 people. Francis de Groot, a member of a paramilitary group, cut the ribbon before Lang could.
"""

OBSERVATORY = """# Lake Orta Observatory

The observatory stands 1,240 metres above sea level on Monte Mottarone. It was founded in 1957 by the astronomer Elena Ferri, who directed it until 1981. The main telescope has a mirror of 1.8 metres and weighs 14 tonnes.

## History

In 1974, the dome was destroyed by a storm and rebuilt within two years. The observatory is closed to visitors during the winter months. Its library holds 12,000 volumes on optics and celestial mechanics.

- The site was chosen by Elena Ferri for its dark skies and dry air.
- The second telescope was donated by the city of Novara in 1990.

Every August, the observatory hosts a public night that attracts about 2,500 visitors. The staff includes 14 astronomers and 6 engineers. A new spectrograph was installed in 2012 at a cost of 900,000 euros.
"""

ROWING = """<!doctype html>
<html><head><title>Marlow Rowing Club</title><style>p { color: red; }</style>
<script>var ignored = "This sentence is inside a script and must never be read.";</script></head>
<body><h1>Marlow Rowing Club</h1>
<p>The Marlow Rowing Club was founded in 1871 by a group of local merchants. Its boathouse stands on the River Thames
near the town bridge. The club has 350 members and owns 42 boats.</p>
<p>In 1908, two members of the club won silver medals at the London Olympics. The annual regatta was first held in
1855 and now draws 1,200 crews. The club was coached by Steve Gunn for 31 years.</p>
<p>The clubhouse was rebuilt by the architect Harold Beck in 1936. Membership is open to anyone over the age of 11.
The club is not affiliated with any university.</p>
</body></html>
"""

TEA = [
    "Hollin Tea Company",
    "The Hollin Tea Company was established in 1889 in the port of Leith.",
    "Its founder, Margaret Hollin, imported tea from Assam and Ceylon.",
    "The company employed 230 people at its peak in 1925.",
    "Its blending house was destroyed by a fire in 1941.",
    "The brand was sold to Ardent Foods in 1972 for 3,500,000 pounds.",
    "The original warehouse is now a museum that opened in 2004.",
]


def minimal_pdf(lines: list[str], title: str = "") -> bytes:
    """A one-page PDF (Helvetica, one line of text per line) that pypdf can read back; offsets computed."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 10 Tf 40 780 Td 14 TL\n" + "".join(f"({esc(line)}) Tj T*\n" for line in lines) + "ET\n"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content.encode('latin-1'))} >>\nstream\n{content}endstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({esc(title)}) >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def write_docs(folder: Path, *, pdf: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bridge.txt").write_text(BRIDGE)
    (folder / "observatory.md").write_text(OBSERVATORY)
    (folder / "rowing.html").write_text(ROWING)
    if pdf:
        (folder / "tea.pdf").write_bytes(minimal_pdf(TEA[1:], title=TEA[0]))
    return folder
