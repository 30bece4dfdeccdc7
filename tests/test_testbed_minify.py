"""Minifiers: python-minifier for Python, the rule-based C++/Java minifier."""
import pytest

from aletheia_ray.testbed.minify import minify


def test_python_minify_keeps_entry_point_and_behaviour():
    code = ('def add_all(numbers: list, start=0):\n    """Sum."""\n    # comment\n    total = start\n'
            '    for value in numbers:\n        total += value\n    return total\n')
    out = minify(code, "python")
    assert len(out) < len(code) and "comment" not in out and "Sum." not in out
    ns = {}
    exec(out, ns)
    assert ns["add_all"]([1, 2, 3], 4) == 10


def test_clike_minify_drops_comments_and_spaces_but_not_meaning():
    code = ('#include <cstdio>\n// line comment\nint main() {\n  /* block */ int a = 5, b = 2;\n'
            '  int c = a - -b;  // keeps the space between - -\n  char q = \'a\';\n'
            '  printf("%d %c // not a comment\\n", c, q);\n  return 0;\n}\n')
    out = minify(code, "cpp")
    assert out.startswith("#include <cstdio>\n")
    assert "line comment" not in out and "block" not in out
    assert "a- -b" in out and "'a'" in out and '"%d %c // not a comment\\n"' in out
    assert "int main(){int a=5,b=2;" in out


def test_clike_minify_java_keeps_word_boundaries():
    code = "public class Main {\n    public static void main(String[] args) {\n        int x = 1;\n    }\n}\n"
    assert minify(code, "java") == "public class Main{public static void main(String[]args){int x=1;}}\n"


def test_minify_rejects_unknown_language():
    with pytest.raises(ValueError, match="unsupported language"):
        minify("x", "rust")
