#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (the zip is unpacked to
# /autograder/source). It installs Python and what students may import, at the exact versions CI
# tests (constraints.txt), and creates the unprivileged account the tests run as.
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip python3-venv
# constraints.txt's versions need Python 3.11 or newer. Ubuntu 22.04's python3 is 3.10; its
# universe component has python3.11.
PYTHON=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 python3.11-venv || {
        echo "setup.sh: $(python3 --version) is older than 3.11 and apt has no python3.11:" \
            "choose a newer Ubuntu base image (24.04 has Python 3.12)" >&2
        exit 1
    }
    PYTHON=python3.11
fi
"$PYTHON" -m venv /autograder/venv
# The CPU build of torch: the extra index offers torch==2.13.0+cpu, which pip prefers to PyPI's
# 2.13.0 (a CUDA build that pulls several GB of NVIDIA libraries); both satisfy torch==2.13.0.
/autograder/venv/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
    -r /autograder/source/requirements.txt -c /autograder/source/constraints.txt
bash /autograder/source/create_sandbox_user.sh
