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

# e2e_toml <file> <folder> <layers> <channels> <context> <train keys>: a 2-head model of that size, seq_len
# = context, on <folder>/tok_{train,val}.bin, one CPU thread, written to <file>; <train keys>
# (`key = value` lines) complete [train]; callers append their own sections ([checkpoint], [run], ...).
e2e_toml() {
  local file=$1 dir=$2 layers=$3 channels=$4 context=$5 train_keys=$6
  cat > "$file" <<TOML
[model]
n_layer = $layers
n_head = 2
n_embd = $channels
context = $context

[train]
seq_len = $context
$train_keys

[data]
train_file = "$dir/tok_train.bin"
val_file = "$dir/tok_val.bin"

[device]
device = "cpu"
threads = 1
TOML
}

# e2e_small_toml <file> <folder> <train keys>: 2 layers, 32 channels, context 32 (e2e_toml).
e2e_small_toml() { e2e_toml "$1" "$2" 2 32 32 "$3"; }

# e2e_micro_toml <folder> <steps> <run name>: the smallest model (1 layer, 16 channels, 16 tokens, batch 2)
# in <folder>/tiny.toml, run directory <folder>/runs/<run name>; callers append their own sections
# ([checkpoint], [orbit], ...).
e2e_micro_toml() {
  local dir=$1 steps=$2 name=$3
  e2e_toml "$dir/tiny.toml" "$dir" 1 16 16 "batch_size = 2
steps = $steps"
  cat >> "$dir/tiny.toml" <<TOML

[run]
dir = "$dir/runs"
name = "$name"
TOML
}
