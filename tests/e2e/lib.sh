# Shared by the e2e scripts (source it after defining fail()): one-machine mpirun flags and a small
# token dataset built with the real perigee-data.

# MPI=(mpiexec + flags for ranks on one machine; root allowed when root).
e2e_mpi_flags() {
  MPI=("$1" --oversubscribe --bind-to none --mca btl self,vader)
  [[ $(id -u) -eq 0 ]] && MPI+=(--allow-run-as-root)
  return 0
}

# e2e_make_tokens <perigee-data> <folder> [sentence]: 400 paragraphs -> <folder>/tok_{train,val}.bin.
e2e_make_tokens() {
  local data_bin=$1 dir=$2
  local sentence=${3:-"crossed the terminator and resumed training after the eclipse."}
  local i
  for i in $(seq 1 400); do
    echo "Satellite $i $sentence"
    echo
  done > "$dir/corpus.txt"
  "$data_bin" --input "$dir/corpus.txt" --out "$dir/tok" --val-fraction 0.1 > "$dir/data.log" 2>&1 \
    || { cat "$dir/data.log"; fail "perigee-data failed"; }
  [[ -s "$dir/tok_train.bin" && -s "$dir/tok_val.bin" ]] || fail "token files missing"
}
