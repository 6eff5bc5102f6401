"""Print `name==lower_bound` for every direct dependency of musictag (core and `dev` extra).

Usage: python3 .ci/bounds.py lowest
"""

import re
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
if sys.argv[1:] != ["lowest"]:
    sys.exit(__doc__)
for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
    m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)", req)
    low = re.search(r">=\s*([^,\s;]+)", m.group(3))
    if low:
        print(f"{m.group(1)}=={low.group(1)}")
