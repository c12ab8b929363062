"""Write requirements.lock from the virtualenv and mirror its pins into environment.yml.

Usage: ``.venv/bin/python tools/lock.py`` (``make lock``). The two files must always agree
(tests/test_environment.py checks it).
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def frozen() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                         capture_output=True, text=True, check=True).stdout
    pins = []
    for line in out.splitlines():
        if "==" not in line or line.startswith("-e"):
            continue
        name, version = line.split("==", 1)
        if name.lower() == "curvlab":
            continue
        pins.append(f"{name}=={version.split('+')[0]}")   # torch 2.13.0+cpu is pinned as 2.13.0
    return sorted(pins, key=str.lower)


def main():
    pins = frozen()
    header = ("# Exact versions the committed notebook outputs were made with (Python 3.11).\n"
              "# Regenerate with `make lock`; environment.yml carries the same pins.\n")
    (ROOT / "requirements.lock").write_text(header + "\n".join(pins) + "\n")
    env = ["# conda env create -f environment.yml  (same pins as requirements.lock; `make lock`)",
           "name: curvlab", "channels:", "  - conda-forge", "dependencies:", "  - python=3.11", "  - pip",
           "  - pip:"] + [f"    - {p}" for p in pins] + ["    - -e ."]
    (ROOT / "environment.yml").write_text("\n".join(env) + "\n")
    print(f"{len(pins)} pins written")


if __name__ == "__main__":
    main()
