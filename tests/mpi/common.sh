# Shared by the data-parallel tests: sourced with KILN (the kiln binary) and DATA (an IDX images
# file) set. mpirun runs as root in CI containers, oversubscribes the two cores, and each rank
# keeps to one PoCL thread so two ranks do not fight over the cores.
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export POCL_MAX_PTHREAD_COUNT=${POCL_MAX_PTHREAD_COUNT:-1}
export OPENBLAS_NUM_THREADS=1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODEL=$HERE/small-cnn.kiln
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-mpi.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Flags of every run: no augmentation, no dropout in the model, one data worker per rank.
TRAIN=(train --model "$MODEL" --data "$DATA" --augment none --workers 1 --seed 7)
fail() { echo "FAIL: $*" >&2; exit 1; }
