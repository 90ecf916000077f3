from diffcrit.validation.document import Document, format_value


def test_markdown_and_html_render_the_same_blocks():
    doc = Document("T").heading("Section").paragraph("a < b").table([{"x": 1, "y": 0.5}])
    doc.figure("figures/f.png", "cap").bullets(["one"]).code("print(1)")
    md = doc.to_markdown()
    assert md.startswith("# T")
    assert "| x | y |" in md and "| 1 | 0.5 |" in md
    assert "![cap](figures/f.png)" in md and "- one" in md and "```" in md
    html = doc.to_html()
    assert "<h2>Section</h2>" in html and "a &lt; b" in html
    assert '<img src="figures/f.png"' in html and "<td>0.5</td>" in html


def test_format_value():
    assert format_value(None) == "–"
    assert format_value(True) == "yes"
    assert format_value(1.23456789) == "1.235"
    assert format_value(1.5e-6) == "1.500e-06"
    assert format_value([1, 2.5]) == "[1, 2.5]"
