"""Lint: a test function or class defined twice in one scope. The later definition hides the
earlier, which pytest then never collects or runs, and nothing else says so."""
import ast
import pathlib
import sys


def shadowed(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []

    def scan(body):
        seen = {}
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.lower().startswith("test") and node.name in seen:
                    found.append((node.name, seen[node.name], node.lineno))
                seen[node.name] = node.lineno
                if isinstance(node, ast.ClassDef):
                    scan(node.body)

    scan(tree.body)
    return found


def main(root):
    bad = 0
    for path in sorted(pathlib.Path(root).rglob("*.py")):
        for name, first, again in shadowed(path):
            print(f"{path}:{again}: {name} defined again (first at line {first}): the first never runs")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "tests"))
