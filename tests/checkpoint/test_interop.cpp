// Other readers: h5dump (hdf5-tools) prints the layout, and h5py (python3-h5py) reads a tensor,
// an attribute and the config. Each test skips with a message when its tool is missing.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "checkpoint/hdf5_io.hpp"
#include "tests/checkpoint/test_support.hpp"

namespace perigee::checkpoint {
namespace {

using test_support::make_snapshot;
using test_support::ScratchDir;

int run(const std::string& command) {
  const int rc = std::system(command.c_str());
  return rc == -1 ? -1 : WEXITSTATUS(rc);
}

bool have_h5dump() {
  return run("h5dump --version > /dev/null 2>&1") == 0;
}

// The first interpreter that imports h5py (Debian's python3-h5py lives in /usr/bin/python3).
std::string python_with_h5py() {
  for (const char* py : {"python3", "/usr/bin/python3"})
    if (run(std::string(py) + " -c 'import h5py' > /dev/null 2>&1") == 0) return py;
  return "";
}

TEST(Interop, H5dumpReadsTheLayout) {
  if (!have_h5dump()) GTEST_SKIP() << "h5dump not found (apt-get install hdf5-tools)";
  ScratchDir dir("interop");
  const std::string path = dir.file("ckpt.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(42, 3)));
  const std::string out = dir.file("dump.txt");
  ASSERT_EQ(run("h5dump -H -p '" + path + "' > '" + out + "' 2>&1"), 0) << test_support::read_bytes(out);
  const std::string dump = test_support::read_bytes(out);
  for (const char* want :
       {"GROUP \"/\"", "ATTRIBUTE \"manifest_crc32c\"", "ATTRIBUTE \"format_version\"", "GROUP \"buffers\"",
        "GROUP \"adam_v\"", "DATASET \"h.1.mlp.c_proj.weight\"", "H5T_IEEE_F32LE",
        "SIMPLE { ( 16, 64 ) / ( 16, 64 ) }", "CHECKSUM FLETCHER32", "ATTRIBUTE \"crc32c\"", "GROUP \"meta\"",
        "DATASET \"data_cursors\"", "DATASET \"config_json\"", "GROUP \"lr_schedule\"",
        "GROUP \"rng_states\"", "GROUP \"series\"", "H5T_IEEE_F64LE"})
    EXPECT_NE(dump.find(want), std::string::npos) << "h5dump output lacks " << want;
}

TEST(Interop, H5pyReadsATensorAndTheMetadata) {
  const std::string py = python_with_h5py();
  if (py.empty()) GTEST_SKIP() << "no python3 with h5py (apt-get install python3-h5py)";
  ScratchDir dir("interop");
  const std::string path = dir.file("ckpt.h5");
  const Snapshot s = make_snapshot(42, 3);
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, s));
  const Buffer& m = *s.find_buffer("adam_m");
  const View* v = nullptr;
  for (const View& x : m.views)
    if (x.name == "h.1.attn.c_attn.weight") v = &x;
  ASSERT_NE(v, nullptr);
  const float want = m.data[v->offset + 5 * v->shape[1] + 7];  // element [5, 7]
  char want_text[64];
  std::snprintf(want_text, sizeof(want_text), "%.9g", want);
  const std::string script =
      "import h5py, json, numpy as np\n"
      "f = h5py.File('" +
      path +
      "', 'r')\n"
      "d = f['buffers/adam_m/h.1.attn.c_attn.weight']\n"
      "assert d.shape == (48, 16), d.shape\n"
      "assert d.dtype == np.float32\n"
      "assert d[5, 7] == np.float32(" +
      want_text + "), (d[5, 7], " + want_text +
      ")\n"
      "assert int(f.attrs['step']) == 42\n"
      "assert f.attrs['format'] == b'perigee-checkpoint'\n"
      "assert d.fletcher32\n"
      "assert list(f['meta/data_cursors'][1]) == [42 * 16 + 1, 7]\n"
      "cfg = json.loads(f['meta/config_json'][()].decode())\n"
      "assert cfg['train']['lr'] == 0.0006\n"
      "assert f['meta/series'].attrs['losses'][0] == 1.0 / 3.0\n"
      "assert f['meta/series'].attrs['norms'].dtype == np.float64\n"
      "print('h5py ok')\n";
  const std::string script_path = dir.file("check.py");
  test_support::write_bytes(script_path, script);
  const std::string out = dir.file("py.txt");
  EXPECT_EQ(run(py + " '" + script_path + "' > '" + out + "' 2>&1"), 0) << test_support::read_bytes(out);
  EXPECT_NE(test_support::read_bytes(out).find("h5py ok"), std::string::npos)
      << test_support::read_bytes(out);
}

}  // namespace
}  // namespace perigee::checkpoint
