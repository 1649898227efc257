#!/bin/sh
# The tenantml image's entrypoint.
#
#   worker [OPTIONS]   training workers of one class and their flow-run fork server, in the
#                      foreground until SIGTERM: `tenantml worker start --class $TENANTML_WORKER_CLASS
#                      --count $TENANTML_WORKER_COUNT [OPTIONS]` (defaults: small, 1)
#   anything else      run as given: `prefect server start ...`, `mlflow server ...`, `tenantml up`,
#                      `bentoml serve ...`, or the command an ECS or Kubernetes worker gives a flow run
set -eu

if [ "$#" -eq 0 ] || [ "$1" = "worker" ]; then
    [ "$#" -gt 0 ] && shift
    exec tenantml worker start --class "${TENANTML_WORKER_CLASS:-small}" --count "${TENANTML_WORKER_COUNT:-1}" "$@"
fi
exec "$@"
