#!/usr/bin/env bash
# Create the unprivileged account the tests run as (called by setup.sh; CI calls it to emulate
# Gradescope). It owns nothing: no home, no login shell, no groups besides its own.
set -euo pipefail
id -u grader-sandbox >/dev/null 2>&1 || useradd --no-create-home --user-group --shell /usr/sbin/nologin grader-sandbox
