#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (the zip is unpacked to
# /autograder/source). It installs Python and what students may import, and creates the
# unprivileged account the tests run as.
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip python3-venv
python3 -m venv /autograder/venv
# The CPU build of torch (the default Linux wheel pulls several GB of CUDA libraries).
/autograder/venv/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
    -r /autograder/source/requirements.txt
bash /autograder/source/create_sandbox_user.sh
