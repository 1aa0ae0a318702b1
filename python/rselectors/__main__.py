"""python -m rselectors prog.py | -m module | -c code [args...]

Runs a program with every ``import selectors`` resolving to rselectors.
"""

import sys

from rselectors._runner import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
