"""`python -m dlcompare.frameworks [--check]`: refresh (or check) the DVC dependency folders deps/<name>/."""

import sys

from dlcompare.frameworks import sync_dependency_links

check = "--check" in sys.argv[1:]
stale = sync_dependency_links(check=check)
for path in stale:
    print(("out of date: " if check else "updated: ") + path)
sys.exit(1 if check and stale else 0)
