#!/bin/sh
# A rank that dies (SIGKILL) or stops answering must end the whole job, never
# hang it: runs `mpirun -np 2 ... PROGRAM ARGS...` (the program makes its last
# rank fail while the others wait in a collective) and passes when mpirun
# exits non-zero within LIMIT seconds. Usage: mpi_rank_dies.sh MPIRUN LIMIT PROGRAM [ARGS...]
set -u
mpirun=$1 limit=$2
shift 2
start=$(date +%s)
# the outer timeout only turns a hang into a failure with a clear message
timeout -k 5 $((limit * 3)) "$mpirun" -np 2 --oversubscribe --allow-run-as-root --bind-to none "$@"
rc=$?
took=$(( $(date +%s) - start ))
echo "mpirun exited with status $rc after ${took}s"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 -a "$took" -ge $((limit * 3)) ]; then
    echo "FAIL: the job hung after a rank died"; exit 1
fi
if [ "$rc" -eq 0 ]; then
    echo "FAIL: mpirun reported success although a rank was killed"; exit 1
fi
if [ "$took" -gt "$limit" ]; then
    echo "FAIL: the others took ${took}s (> ${limit}s) to stop"; exit 1
fi
echo "ok: the job stopped with an error in ${took}s"
