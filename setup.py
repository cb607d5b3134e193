"""Package discovery for misgen's fixed top-level layout.

environments/, agents/ and probes/ live at the top level but install as ``misgen.environments``,
``misgen.agents`` and ``misgen.probes``. Sub-packages are discovered, so adding ``agents/foo/``
needs no edit here. All other metadata lives in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED = {"misgen.environments": "environments", "misgen.agents": "agents", "misgen.probes": "probes"}

packages = ["misgen", *(f"misgen.{sub}" for sub in find_packages("misgen"))]
package_dir = {"misgen": "misgen"}
for name, folder in MAPPED.items():
    packages.append(name)
    package_dir[name] = folder
    packages.extend(f"{name}.{sub}" for sub in find_packages(folder))

# Docs the report embeds (the how-to-read section) must install with the code.
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"misgen.report": ["HOW_TO_READ.md"], "misgen.bench": ["MEASUREMENTS.md"]},
)
